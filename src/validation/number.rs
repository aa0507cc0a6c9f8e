//! A number literal CPython 3.11's tokenizer refuses (`0x`, `0b2`, `1_`, `1e`, `12abc`,
//! `0777`): its message and where it puts it. rustpython refuses some of these in words of
//! its own, and reads others as two tokens.

/// The error in the number literal starting at byte `start`, if CPython's tokenizer finds
/// one: the message and the byte offset of the column CPython reports.
pub(super) fn literal_error(script: &str, start: usize) -> Option<(String, usize)> {
    let chars: Vec<(usize, char)> = script[start..]
        .char_indices()
        .map(|(i, c)| (start + i, c))
        .take_while(|&(_, c)| c != '\n')
        .collect();
    let mut scan = Scan { chars: &chars, at: 0 };
    let failure = scan.number()?;
    let (message, column_of) = match failure {
        Failure::Invalid(kind) => (format!("invalid {kind} literal"), scan.at.checked_sub(1)?),
        // CPython has read the digit when it refuses it.
        Failure::Digit(digit, kind) => (format!("invalid digit '{digit}' in {kind} literal"), scan.at - 1),
        Failure::LeadingZeros => (
            "leading zeros in decimal integer literals are not permitted; use an 0o prefix for octal integers"
                .to_string(),
            0,
        ),
    };
    Some((message, chars.get(column_of).map_or(script.len(), |&(i, _)| i)))
}

enum Failure {
    /// Reported at the column before the character CPython stopped at.
    Invalid(&'static str),
    /// Reported at the digit.
    Digit(char, &'static str),
    /// Reported at the literal's start.
    LeadingZeros,
}

struct Scan<'a> {
    chars: &'a [(usize, char)],
    /// The next character to read.
    at: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).map(|&(_, c)| c)
    }

    fn next_if(&mut self, wanted: impl Fn(char) -> bool) -> Option<char> {
        let c = self.peek().filter(|&c| wanted(c))?;
        self.at += 1;
        Some(c)
    }

    /// CPython's `tok_get` for a NUMBER token; `None` when it is a valid literal.
    fn number(&mut self) -> Option<Failure> {
        if self.peek() == Some('0') {
            self.at += 1;
            let radix = match self.next_if(|c| "xXoObB".contains(c)) {
                Some('x' | 'X') => Some((16, "hexadecimal")),
                Some('o' | 'O') => Some((8, "octal")),
                Some(_) => Some((2, "binary")),
                None => None,
            };
            if let Some((radix, kind)) = radix {
                return self.radix_digits(radix, kind);
            }
            return self.after_zero();
        }
        if self.peek() != Some('.') {
            if let Some(failure) = self.decimal_tail() {
                return Some(failure);
            }
        }
        self.fraction_and_rest()
    }

    /// `0x`, `0o`, `0b` digits, with single underscores between them.
    fn radix_digits(&mut self, radix: u32, kind: &'static str) -> Option<Failure> {
        loop {
            self.next_if(|c| c == '_');
            if self.next_if(|c| c.is_digit(radix)).is_none() {
                return Some(match self.peek() {
                    Some(d) if radix < 10 && d.is_ascii_digit() => {
                        self.at += 1;
                        Failure::Digit(d, kind)
                    }
                    _ => Failure::Invalid(kind),
                });
            }
            while self.next_if(|c| c.is_digit(radix)).is_some() {}
            if self.peek() != Some('_') {
                break;
            }
        }
        if let Some(d) = self.peek().filter(|d| radix < 10 && d.is_ascii_digit()) {
            self.at += 1;
            return Some(Failure::Digit(d, kind));
        }
        self.end_of_number(kind)
    }

    /// A literal starting with `0` and no radix prefix: zeros, maybe a float or imaginary.
    fn after_zero(&mut self) -> Option<Failure> {
        loop {
            if self.next_if(|c| c == '_').is_some() && !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Some(Failure::Invalid("decimal"));
            }
            if self.next_if(|c| c == '0').is_none() {
                break;
            }
        }
        let nonzero = self.peek().is_some_and(|c| c.is_ascii_digit());
        if nonzero {
            if let Some(failure) = self.decimal_tail() {
                return Some(failure);
            }
        }
        match self.peek() {
            Some('.' | 'e' | 'E' | 'j' | 'J') => self.fraction_and_rest(),
            _ if nonzero => Some(Failure::LeadingZeros),
            _ => self.end_of_number("decimal"),
        }
    }

    /// Digits with single underscores between them; `Some` is CPython's error.
    fn decimal_tail(&mut self) -> Option<Failure> {
        loop {
            while self.next_if(|c| c.is_ascii_digit()).is_some() {}
            self.next_if(|c| c == '_')?;
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Some(Failure::Invalid("decimal"));
            }
        }
    }

    /// An optional fraction, exponent and `j`, after the integer part.
    fn fraction_and_rest(&mut self) -> Option<Failure> {
        if self.next_if(|c| c == '.').is_some() && self.peek().is_some_and(|c| c.is_ascii_digit()) {
            if let Some(failure) = self.decimal_tail() {
                return Some(failure);
            }
        }
        if let Some(_e) = self.next_if(|c| c == 'e' || c == 'E') {
            if self.next_if(|c| c == '+' || c == '-').is_some() {
                if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return Some(Failure::Invalid("decimal"));
                }
            } else if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                // `1e` then a name: CPython backs up to the `e`.
                self.at -= 1;
                return self.end_of_number("decimal");
            }
            if let Some(failure) = self.decimal_tail() {
                return Some(failure);
            }
        }
        if self.next_if(|c| c == 'j' || c == 'J').is_some() {
            return self.end_of_number("imaginary");
        }
        self.end_of_number("decimal")
    }

    /// CPython's `verify_end_of_number`: a literal may be followed directly by the keywords
    /// that can follow it in valid code, not by any other name.
    fn end_of_number(&mut self, kind: &'static str) -> Option<Failure> {
        let rest: String = self.chars[self.at..].iter().take(4).map(|&(_, c)| c).collect();
        const ALLOWED: [&str; 7] = ["and", "else", "for", "if", "in", "is", "or"];
        let c = self.peek()?;
        if ALLOWED.iter().any(|k| rest.starts_with(k)) || rest.starts_with("not") {
            return None;
        }
        (c.is_alphanumeric() || c == '_' || !c.is_ascii()).then_some(Failure::Invalid(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::literal_error;

    /// CPython 3.11's message and 1-based column for `x = <literal>` (the literal at column 5).
    #[test]
    fn number_literals_are_refused_as_cpython_does() {
        let cases = [
            ("0x", Some(("invalid hexadecimal literal", 6))),
            ("0xZZ", Some(("invalid hexadecimal literal", 6))),
            ("0x_", Some(("invalid hexadecimal literal", 7))),
            ("0x1_", Some(("invalid hexadecimal literal", 8))),
            ("0x1g", Some(("invalid hexadecimal literal", 7))),
            ("0b", Some(("invalid binary literal", 6))),
            ("0b2", Some(("invalid digit '2' in binary literal", 7))),
            ("0b12", Some(("invalid digit '2' in binary literal", 8))),
            ("0b1a", Some(("invalid binary literal", 7))),
            ("0o8", Some(("invalid digit '8' in octal literal", 7))),
            ("0o7_2_", Some(("invalid octal literal", 10))),
            ("1_", Some(("invalid decimal literal", 6))),
            ("1__0", Some(("invalid decimal literal", 6))),
            ("1_000_", Some(("invalid decimal literal", 10))),
            ("1e", Some(("invalid decimal literal", 5))),
            ("1ex", Some(("invalid decimal literal", 5))),
            ("1e+", Some(("invalid decimal literal", 7))),
            ("1.5e", Some(("invalid decimal literal", 7))),
            ("12abc", Some(("invalid decimal literal", 6))),
            ("1j2", Some(("invalid imaginary literal", 6))),
            (
                "0777",
                Some((
                    "leading zeros in decimal integer literals are not permitted; use an 0o prefix for octal integers",
                    5,
                )),
            ),
            (
                "09",
                Some((
                    "leading zeros in decimal integer literals are not permitted; use an 0o prefix for octal integers",
                    5,
                )),
            ),
            ("00", None),
            ("0_0", None),
            ("0x_1f", None),
            ("1_000.5e-3j", None),
            (".5", None),
            ("1if x else 2", None),
            ("0or 1", Some(("invalid octal literal", 6))),
            ("0xfor x in y", None),
            ("0b_1", None),
            ("0b__1", Some(("invalid binary literal", 7))),
            ("0__1", Some(("invalid decimal literal", 6))),
            ("0e", Some(("invalid decimal literal", 5))),
            ("1e5j2", Some(("invalid imaginary literal", 8))),
            (
                "00_1",
                Some((
                    "leading zeros in decimal integer literals are not permitted; use an 0o prefix for octal integers",
                    5,
                )),
            ),
            ("1.__class__", Some(("invalid decimal literal", 6))),
            ("1ifx", None),
            ("1e5", None),
            ("0.", None),
            ("1 abc", None),
        ];
        for (literal, expected) in cases {
            let script = format!("x = {literal}\n");
            let got = literal_error(&script, 4).map(|(message, offset)| {
                let column = script[..offset].chars().count() + 1;
                (message, column)
            });
            assert_eq!(got, expected.map(|(m, c)| (m.to_string(), c)), "{literal}");
        }
    }
}
