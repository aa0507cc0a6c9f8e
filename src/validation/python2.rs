//! Python 2 forms that CPython 3.11 names where rustpython only says which token it did not
//! expect: `except ValueError, e:` ("multiple exception types must be parenthesized"),
//! `a <> b` ("invalid syntax" at the `<>`, one token to CPython) and `lambda (a, b): ...`
//! ("Lambda expression parameters cannot be parenthesized").

use super::expected::ends_an_expression;
use rustpython_parser::Tok;

/// CPython's message and byte offset, given the logical line's tokens before the one the
/// parser did not expect, that token and its offset, and the line's tokens after it.
pub(super) fn detail(
    line: &[(Tok, usize)],
    unexpected: &Tok,
    at: usize,
    rest: &[(Tok, usize)],
) -> Option<(String, usize)> {
    match unexpected {
        Tok::Comma => except_with_comma(line, rest),
        Tok::Greater => match line.last() {
            Some((Tok::Less, less)) if less + 1 == at => Some(("invalid syntax".to_string(), *less)),
            _ => None,
        },
        Tok::Lpar => parenthesized_lambda_parameters(line, rest)
            .then(|| ("Lambda expression parameters cannot be parenthesized".to_string(), at)),
        _ => None,
    }
}

/// `except A, B:` (or `except* A, B:`, with `as name` before the colon): CPython points at `A`.
fn except_with_comma(line: &[(Tok, usize)], rest: &[(Tok, usize)]) -> Option<(String, usize)> {
    let first = match line {
        [(Tok::Except, _), (Tok::Star, _), ..] => 2,
        [(Tok::Except, _), ..] => 1,
        _ => return None,
    };
    let (_, start) = line.get(first)?;
    if !line.last().is_some_and(|(tok, _)| ends_an_expression(tok)) {
        return None;
    }
    // After the comma: expressions, maybe `as name`, then the colon.
    let colon = rest.iter().position(|(tok, _)| *tok == Tok::Colon)?;
    let mut types = &rest[..colon];
    if let [before @ .., (Tok::As, _), (Tok::Name { .. }, _)] = types {
        types = before;
    }
    if let [before @ .., (Tok::Comma, _)] = types {
        types = before;
    }
    let whole =
        types.last().is_some_and(|(tok, _)| ends_an_expression(tok)) && !types.iter().any(|(tok, _)| *tok == Tok::As);
    whole.then(|| ("multiple exception types must be parenthesized".to_string(), *start))
}

/// `lambda (a, b): ...` or `lambda x, (a, b): ...`: plain names before the bracket, names
/// separated by commas in it.
fn parenthesized_lambda_parameters(line: &[(Tok, usize)], rest: &[(Tok, usize)]) -> bool {
    let Some(lambda) = line.iter().rposition(|(tok, _)| *tok == Tok::Lambda) else {
        return false;
    };
    // Plain parameters before the bracket (each with its comma), names in it (`a, b` or
    // `a, b,`).
    let before = &line[lambda + 1..];
    let Some(close) = rest.iter().position(|(tok, _)| *tok == Tok::Rpar) else {
        return false;
    };
    let inside = &rest[..close];
    names_and_commas(before) && before.len() % 2 == 0 && !inside.is_empty() && names_and_commas(inside)
}

/// A name at every even place, a comma at every odd one.
fn names_and_commas(tokens: &[(Tok, usize)]) -> bool {
    tokens.iter().enumerate().all(|(i, (tok, _))| {
        if i % 2 == 0 {
            matches!(tok, Tok::Name { .. })
        } else {
            *tok == Tok::Comma
        }
    })
}

#[cfg(test)]
mod tests {
    use crate::validation::validate;

    #[test]
    fn python_2_forms_are_named_where_cpython_names_them() {
        // (script, message, line, column), each as CPython 3.11 gives it.
        let tuple = "multiple exception types must be parenthesized";
        let lambda = "Lambda expression parameters cannot be parenthesized";
        let cases = [
            ("try:\n    pass\nexcept ValueError, e:\n    pass\n", tuple, 3, 8),
            ("try:\n    pass\nexcept (A, B), e:\n    pass\n", tuple, 3, 8),
            ("try:\n    pass\nexcept A, B as e:\n    pass\n", tuple, 3, 8),
            ("try:\n    pass\nexcept* A, B:\n    pass\n", tuple, 3, 9),
            ("try:\n    pass\nexcept A, B, C:\n    pass\n", tuple, 3, 8),
            ("try:\n    pass\nexcept A.x, B[0]:\n    pass\n", tuple, 3, 8),
            ("x = a <> b\n", "invalid syntax", 1, 7),
            ("if a <> b: pass\n", "invalid syntax", 1, 6),
            ("f = lambda (a, b): a\n", lambda, 1, 12),
            ("f = lambda x, (a, b): a\n", lambda, 1, 15),
            ("f = lambda (a): a\n", lambda, 1, 12),
            ("f = lambda (a, b,): a\n", lambda, 1, 12),
            ("f = lambda (a, b)\n", lambda, 1, 12),
        ];
        for (script, message, line, column) in cases {
            let expected = format!("SyntaxError: {message} (line {line}, column {column})");
            assert_eq!(validate(script).expect_err(script).message, expected, "{script:?}");
        }
    }

    #[test]
    fn other_mistakes_nearby_keep_their_own_errors() {
        // No colon after the types, no type after the comma, a parameter that is no name.
        for script in [
            "try:\n    pass\nexcept A, B\n    pass\n",
            "try:\n    pass\nexcept A, :\n    pass\n",
            "f = lambda (1): a\n",
            "x = a < > b\n",
        ] {
            let message = validate(script).expect_err(script).message;
            assert!(
                message.starts_with("SyntaxError: invalid syntax"),
                "{script:?}: {message}"
            );
        }
    }
}
