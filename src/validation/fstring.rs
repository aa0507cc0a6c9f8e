//! An f-string's syntax error as CPython 3.11 reports it. Its f-string scanner words errors
//! its own way, and places them where its parser stood when the string was reduced: the
//! first thing after the string (and the strings implicitly joined to it, scanned as one).

use super::strings::{literal_parts, strings_around};
use rustpython_parser::FStringErrorType;

/// The message and byte offset CPython gives for rustpython's f-string error `kind` found at
/// byte `reported`; `None` for errors in an expression's own syntax (left as rustpython
/// words them) or where the string cannot be found.
pub(super) fn detail(script: &str, reported: usize, kind: &FStringErrorType) -> Option<(String, usize)> {
    let (strings, after) = strings_around(script, reported)?;
    let first_problem = || {
        strings
            .iter()
            .find_map(|&(start, end)| first_problem(&script[start..end]))
    };
    let message = match kind {
        FStringErrorType::InvalidConversionFlag => {
            "f-string: invalid conversion character: expected 's', 'r', or 'a'".to_string()
        }
        FStringErrorType::ExpectedRbrace => "f-string: expecting '}'".to_string(),
        FStringErrorType::ExpressionCannotInclude(c) => cannot_include(*c),
        FStringErrorType::EmptyExpression => match first_problem() {
            Some(Problem::ExpressionRequiredBefore(c)) => {
                format!("f-string: expression required before '{c}'")
            }
            _ => "f-string: empty expression not allowed".to_string(),
        },
        // rustpython stops at a backslash or `#` in an expression without naming it.
        FStringErrorType::UnterminatedString | FStringErrorType::InvalidExpression(_) => match first_problem() {
            Some(Problem::CannotInclude(c)) => cannot_include(c),
            _ if matches!(kind, FStringErrorType::UnterminatedString) => "f-string: unterminated string".to_string(),
            _ => return None,
        },
        other => format!("f-string: {other}"),
    };
    Some((message, after))
}

fn cannot_include(c: char) -> String {
    if c == '\\' {
        "f-string expression part cannot include a backslash".to_string()
    } else {
        format!("f-string expression part cannot include '{c}'")
    }
}

#[derive(Debug, PartialEq)]
pub(super) enum Problem {
    ExpressionRequiredBefore(char),
    CannotInclude(char),
}

/// The first of CPython 3.11's scanner errors in one f-string literal (its source, prefix and
/// quotes included). Other strings have none.
fn first_problem(literal: &str) -> Option<Problem> {
    let (prefix, _, body) = literal_parts(literal)?;
    if !prefix.contains(['f', 'F']) {
        return None;
    }
    scan(body, prefix.contains(['r', 'R'])).1
}

/// An f-string's body (`raw`: an rf-string's) walked as CPython 3.11's f-string scanner walks
/// it, left to right: its pieces of literal text (offset in the body, text), which CPython
/// decodes one by one, and the first replacement field it refuses: one with no expression
/// before `!`, `:` or `=`, or a backslash (anywhere) or `#` (outside quotes) in an expression.
/// The walk stops at that field.
pub(super) fn scan(body: &str, raw: bool) -> (Vec<(usize, &str)>, Option<Problem>) {
    let mut pieces = Vec::new();
    let mut piece_start = 0;
    let mut chars = body.char_indices().peekable();
    // Nesting of fields: each entry is the bracket depth inside that field's expression, or
    // `None` once its expression is over (in its conversion or format spec).
    let mut fields: Vec<Option<usize>> = Vec::new();
    let mut quote = None::<char>;
    while let Some((i, c)) = chars.next() {
        match fields.last_mut() {
            // Literal text, at the top or in a format spec.
            None | Some(None) => match c {
                // `\N{...}` names a character: its brace opens no field (`\\N{` is an escaped
                // backslash, then text and a field).
                '\\' if !raw => {
                    if chars.next_if(|&(_, n)| n == 'N').is_some() {
                        if chars.next_if(|&(_, n)| n == '{').is_some() {
                            while chars.next_if(|&(_, n)| n != '}').is_some() {}
                            chars.next();
                        }
                    } else {
                        chars.next_if(|&(_, n)| n == '\\');
                    }
                }
                // A doubled brace ends a piece at its first half.
                '{' | '}' if fields.is_empty() && chars.next_if(|&(_, n)| n == c).is_some() => {
                    pieces.push((piece_start, &body[piece_start..=i]));
                    piece_start = i + 2;
                }
                '}' if fields.is_empty() => {}
                // The end of a format spec, and of its field.
                '}' => {
                    fields.pop();
                    if fields.is_empty() {
                        piece_start = i + 1;
                    }
                }
                '{' => {
                    if fields.is_empty() {
                        pieces.push((piece_start, &body[piece_start..i]));
                    }
                    while chars.next_if(|&(_, n)| n.is_whitespace()).is_some() {}
                    match chars.peek() {
                        Some(&(_, n @ ('!' | ':' | '='))) => {
                            return (pieces, Some(Problem::ExpressionRequiredBefore(n)));
                        }
                        _ => fields.push(Some(0)),
                    }
                }
                _ => {}
            },
            Some(Some(depth)) => match (c, quote) {
                ('\\', _) => return (pieces, Some(Problem::CannotInclude('\\'))),
                (_, Some(open)) if c == open => quote = None,
                (_, Some(_)) => {}
                ('#', None) => return (pieces, Some(Problem::CannotInclude('#'))),
                ('\'' | '"', None) => quote = Some(c),
                ('(' | '[' | '{', None) => *depth += 1,
                ('}', None) if *depth == 0 => {
                    fields.pop();
                    if fields.is_empty() {
                        piece_start = i + 1;
                    }
                }
                (')' | ']' | '}', None) => *depth = depth.saturating_sub(1),
                ('!', None) if *depth == 0 && chars.peek().map(|&(_, n)| n) != Some('=') => {
                    if let Some(field) = fields.last_mut() {
                        *field = None;
                    }
                }
                (':', None) if *depth == 0 => {
                    if let Some(field) = fields.last_mut() {
                        *field = None;
                    }
                }
                _ => {}
            },
        }
    }
    if fields.is_empty() {
        pieces.push((piece_start, &body[piece_start..]));
    }
    (pieces, None)
}

#[cfg(test)]
mod tests {
    use super::{first_problem, scan, Problem};

    #[test]
    fn the_first_field_cpython_would_refuse_is_found() {
        let cases = [
            ("f'{x}'", None),
            ("'{#}'", None),
            ("f'{{#}}'", None),
            ("f'{x:#x}'", None),
            ("f'{a!=b}'", None),
            ("f'{\"#\"}'", None),
            ("f'{#}'", Some(Problem::CannotInclude('#'))),
            ("f'{\"\\n\"}'", Some(Problem::CannotInclude('\\'))),
            ("f'{x:{\"\\n\"}}'", Some(Problem::CannotInclude('\\'))),
            ("f'\\n{x}'", None),
            ("rf'''{ !r}'''", Some(Problem::ExpressionRequiredBefore('!'))),
            ("f'{:x}'", Some(Problem::ExpressionRequiredBefore(':'))),
            ("f'{x:{=}}'", Some(Problem::ExpressionRequiredBefore('='))),
            ("f'{x:{y}}{#}'", Some(Problem::CannotInclude('#'))),
            ("F\"{d['#']}\"", None),
            ("f'\\N{EN DASH}{#}'", Some(Problem::CannotInclude('#'))),
        ];
        for (literal, expected) in cases {
            assert_eq!(first_problem(literal), expected, "{literal}");
        }
    }

    #[test]
    fn literal_pieces_lie_between_fields() {
        assert_eq!(
            scan("a{x}b{{c}}d{y:{z}}e\\N{EN DASH}", false).0,
            vec![(0, "a"), (4, "b{"), (7, "c}"), (10, "d"), (18, "e\\N{EN DASH}")]
        );
        // In an rf-string, `\N{x}` is a backslash, an N and a field.
        assert_eq!(scan("\\N{x}y", true).0, vec![(0, "\\N"), (5, "y")]);
        assert_eq!(scan("\\\\N{x}y", false).0, vec![(0, "\\\\N"), (6, "y")]);
    }
}
