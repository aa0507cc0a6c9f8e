//! String literals as CPython's parser sees them: implicitly joined ones scanned as one, errors
//! in them placed where its parser stood after them, and the escapes its decoders refuse.

use rustpython_parser::lexer::lex;
use rustpython_parser::{Mode, Tok};

/// Where CPython reports an error in the string literals joined into the one holding byte
/// `reported` (as for mixing bytes and text in them).
pub(super) fn after_strings(script: &str, reported: usize) -> Option<usize> {
    strings_around(script, reported).map(|(_, after)| after)
}

/// The byte ranges of the string literals joined into the one holding byte `reported`, and
/// where CPython's parser stood after them: at the next token, or at a comment before it.
pub(super) fn strings_around(script: &str, reported: usize) -> Option<(Vec<(usize, usize)>, usize)> {
    let mut strings: Vec<(usize, usize)> = Vec::new();
    for token in lex(script, Mode::Module) {
        let (tok, range) = token.ok()?;
        let (start, end) = (range.start().to_usize(), range.end().to_usize());
        if matches!(tok, Tok::String { .. }) {
            strings.push((start, end));
            continue;
        }
        let joined = strings.first().map_or(0, |s| s.0)..=strings.last().map_or(0, |s| s.1);
        if !strings.is_empty() && joined.contains(&reported) {
            // A comment ending the line is where CPython's tokenizer starts the NEWLINE token;
            // inside brackets, comments and line breaks are skipped.
            let gap = &script[*joined.end()..start.max(*joined.end())];
            let comment = gap.find('#').filter(|_| matches!(tok, Tok::Newline));
            return Some((strings, joined.end() + comment.unwrap_or(gap.len())));
        }
        strings.clear();
    }
    None
}

/// A string literal's prefix (`rb`, `f`, ...), the byte offset of its body, and its body
/// (between the quotes).
pub(super) fn literal_parts(literal: &str) -> Option<(&str, usize, &str)> {
    let prefix = literal.find(['\'', '"'])?;
    let rest = &literal[prefix..];
    let quotes = if rest.starts_with("'''") || rest.starts_with("\"\"\"") {
        3
    } else {
        1
    };
    let body = literal.get(prefix + quotes..literal.len().checked_sub(quotes)?)?;
    Some((&literal[..prefix], prefix + quotes, body))
}

/// CPython's message for the first escape its decoder refuses in the string literals joined
/// into the one holding byte `reported` (where rustpython refused one), and where it puts it.
pub(super) fn escape_error(script: &str, reported: usize) -> Option<(String, usize)> {
    let (strings, after) = strings_around(script, reported)?;
    for (start, end) in strings {
        let (prefix, body_at, body) = literal_parts(&script[start..end])?;
        if prefix.contains(['r', 'R']) {
            continue;
        }
        let bytes = prefix.contains(['b', 'B']);
        // An f-string's literal parts are decoded one by one, each from its own start.
        let pieces = if prefix.contains(['f', 'F']) {
            super::fstring::scan(body, false).0
        } else {
            vec![(0, body)]
        };
        for (piece_at, piece) in pieces {
            let flagged = reported.checked_sub(start + body_at + piece_at);
            if let Some(message) = first_bad_escape(piece, bytes, flagged) {
                return Some((message, after));
            }
        }
    }
    None
}

/// The first escape CPython 3.11's decoder refuses in one piece of a literal, worded as it
/// words it. Positions are those of the buffer CPython decodes: for text, each non-ASCII
/// character is first rewritten as a 10-byte `\UXXXXXXXX` (a backslash before one as the
/// 6-byte `\u005c`). `flagged`: the byte rustpython stopped at, for the one error only a
/// name database can find (an unknown `\N{...}` name).
fn first_bad_escape(piece: &str, bytes: bool, flagged: Option<usize>) -> Option<String> {
    let chars: Vec<(usize, char)> = piece.char_indices().collect();
    // Each character's position in CPython's buffer, and the buffer's length.
    let mut positions = Vec::with_capacity(chars.len() + 1);
    let mut position = 0;
    for (k, &(_, c)) in chars.iter().enumerate() {
        positions.push(position);
        let escaping = c == '\\' && chars.get(k + 1).is_some_and(|&(_, n)| !n.is_ascii());
        position += match c {
            '\\' if escaping => 6,
            c if !c.is_ascii() => 10,
            _ => 1,
        };
    }
    positions.push(position);
    let refused = |from: usize, to: usize, reason: &str| {
        let (a, b) = (positions[from], positions[to] - 1);
        Some(format!(
            "(unicode error) 'unicodeescape' codec can't decode bytes in position {a}-{b}: {reason}"
        ))
    };
    let hex_digits = |from: usize, most: usize| {
        chars[from..]
            .iter()
            .take(most)
            .take_while(|(_, c)| c.is_ascii_hexdigit())
            .count()
    };
    let mut k = 0;
    while k < chars.len() {
        if chars[k].1 != '\\' {
            k += 1;
            continue;
        }
        let Some(&(_, kind)) = chars.get(k + 1) else { break };
        let digits_at = k + 2;
        match kind {
            'x' => {
                let found = hex_digits(digits_at, 2);
                if found < 2 {
                    return Some(if bytes {
                        format!("(value error) invalid \\x escape at position {}", chars[k].0)
                    } else {
                        refused(k, digits_at + found, "truncated \\xXX escape")?
                    });
                }
                k = digits_at + 2;
            }
            'u' | 'U' if !bytes => {
                let (wanted, reason) = if kind == 'u' {
                    (4, "truncated \\uXXXX escape")
                } else {
                    (8, "truncated \\UXXXXXXXX escape")
                };
                let found = hex_digits(digits_at, wanted);
                if found < wanted {
                    return refused(k, digits_at + found, reason);
                }
                let digits: String = chars[digits_at..digits_at + wanted].iter().map(|&(_, c)| c).collect();
                if u32::from_str_radix(&digits, 16).is_ok_and(|v| v > 0x10FFFF) {
                    return refused(k, digits_at + wanted, "illegal Unicode character");
                }
                k = digits_at + wanted;
            }
            'N' if !bytes => {
                let malformed = "malformed \\N character escape";
                if chars.get(digits_at).map(|&(_, c)| c) != Some('{') {
                    return refused(k, digits_at.min(chars.len()), malformed);
                }
                let Some(close) = chars[digits_at..].iter().position(|&(_, c)| c == '}') else {
                    return refused(k, chars.len(), malformed);
                };
                let close = digits_at + close;
                if close == digits_at + 1 {
                    return refused(k, close, malformed);
                }
                let span = chars[k].0..=chars[close].0;
                if flagged.is_some_and(|at| span.contains(&at)) {
                    return refused(k, close + 1, "unknown Unicode character name");
                }
                k = close + 1;
            }
            _ => k += 2,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{escape_error, first_bad_escape};

    #[test]
    fn escapes_are_refused_as_cpython_decodes_them() {
        let truncated_x = |a, b| {
            format!(
                "(unicode error) 'unicodeescape' codec can't decode bytes in position {a}-{b}: truncated \\xXX escape"
            )
        };
        assert_eq!(first_bad_escape("C:\\new\\x", false, None), Some(truncated_x(6, 7)));
        assert_eq!(first_bad_escape("\\x4", false, None), Some(truncated_x(0, 2)));
        // A non-ASCII character counts ten bytes, a backslash before one six.
        assert_eq!(first_bad_escape("é\\x4", false, None), Some(truncated_x(10, 12)));
        assert_eq!(first_bad_escape("\\é\\x4", false, None), Some(truncated_x(16, 18)));
        assert_eq!(
            first_bad_escape("C:\\Users\\me", false, None).unwrap(),
            "(unicode error) 'unicodeescape' codec can't decode bytes in position 2-3: truncated \\UXXXXXXXX escape"
        );
        assert!(first_bad_escape("ab\\U0011ffff", false, None)
            .unwrap()
            .ends_with("position 2-11: illegal Unicode character"));
        assert!(first_bad_escape("\\N", false, None)
            .unwrap()
            .ends_with("position 0-1: malformed \\N character escape"));
        assert!(first_bad_escape("\\N{}", false, None)
            .unwrap()
            .ends_with("position 0-2: malformed \\N character escape"));
        assert!(first_bad_escape("a\\N{NOPE}", false, Some(3))
            .unwrap()
            .ends_with("position 1-8: unknown Unicode character name"));
        assert_eq!(first_bad_escape("a\\N{EN DASH}\\d\\0\\777\\\\x", false, None), None);
        assert_eq!(
            first_bad_escape("\\x4", true, None).unwrap(),
            "(value error) invalid \\x escape at position 0"
        );
        assert_eq!(first_bad_escape("\\u12", true, None), None);
    }

    #[test]
    fn an_fstring_is_decoded_piece_by_piece() {
        let script = "x = f'{1}\\N{DASH}'\n";
        let (message, after) = escape_error(script, 12).unwrap();
        assert!(
            message.ends_with("position 0-7: unknown Unicode character name"),
            "{message}"
        );
        assert_eq!(after, script.len() - 1);
    }
}
