//! Two of CPython 3.11's "expected ..." messages for a logical line its parser gave up on: a
//! compound statement's header without its colon (`for i in range(3)`, `def main()`), and a
//! conditional expression without its `else` (`x = 1 if y`). Among the commonest mistakes;
//! rustpython only says which token it did not expect.

use rustpython_parser::Tok;

/// CPython's message and byte offset, given the logical line's tokens before the one the
/// parser did not expect (each with its byte offset), that token and its offset.
/// `gap` is the source between the last of `line` and the unexpected token: a comment ending
/// the line is where CPython stands when the line ends.
pub(super) fn detail(line: &[(Tok, usize)], unexpected: &Tok, at: usize, gap: &str) -> Option<(String, usize)> {
    let ends_at = gap.find('#').map_or(at, |comment| at - gap.len() + comment);
    let outside = outside_brackets(line);
    // Past a header's colon (or a lambda's), nothing here applies.
    if outside.iter().any(|(tok, _)| *tok == Tok::Colon) {
        return None;
    }
    match unexpected {
        Tok::Newline => {
            let conditional = outside.iter().skip(1).any(|(tok, _)| *tok == Tok::If);
            if header_is_whole(line) && !conditional {
                Some(("expected ':'".to_string(), ends_at))
            } else {
                missing_else(&outside)
            }
        }
        // The bracket or the argument a conditional expression was in ends without its else.
        Tok::Rpar | Tok::Rsqb | Tok::Rbrace | Tok::Comma => missing_else(&outside_brackets(innermost(line))),
        // These demand their colon right after what their header must have: anything else
        // there is the missing colon.
        _ => {
            let forced = match header(line) {
                Some(Tok::Try | Tok::Finally | Tok::Else) => line.len() == 1,
                Some(Tok::Def) => def_is_whole(line, &outside),
                _ => false,
            };
            forced.then(|| ("expected ':'".to_string(), at))
        }
    }
}

/// A compound statement's header complete but for its colon: CPython says "invalid syntax"
/// for one that stops halfway (`if x and`, `for x`, `with f() as`).
fn header_is_whole(line: &[(Tok, usize)]) -> bool {
    let outside = outside_brackets(line);
    match header(line) {
        Some(Tok::Try | Tok::Finally | Tok::Else) => line.len() == 1,
        Some(Tok::Except) => line.len() == 1 || ends_an_expression(line),
        Some(Tok::For) => ends_an_expression(line) && outside.iter().any(|(tok, _)| *tok == Tok::In),
        Some(Tok::If | Tok::Elif | Tok::While | Tok::With | Tok::Class) => line.len() > 1 && ends_an_expression(line),
        Some(Tok::Def) => def_is_whole(line, &outside),
        _ => false,
    }
}

/// `def name(...)`, with `-> annotation` if any, all brackets closed.
fn def_is_whole(line: &[(Tok, usize)], outside: &[(Tok, usize)]) -> bool {
    let start = usize::from(matches!(line.first(), Some((Tok::Async, _))));
    let named = matches!(
        line.get(start..start + 3),
        Some([(Tok::Def, _), (Tok::Name { .. }, _), (Tok::Lpar, _)])
    );
    let annotated = outside.iter().any(|(tok, _)| *tok == Tok::Rarrow);
    named
        && closed(line)
        && (matches!(line.last(), Some((Tok::Rpar, _))) && !annotated || annotated && ends_an_expression(line))
}

/// The line's last token can end an expression (a name, a literal, a closing bracket).
fn ends_an_expression(line: &[(Tok, usize)]) -> bool {
    matches!(
        line.last(),
        Some((
            Tok::Name { .. }
                | Tok::Int { .. }
                | Tok::Float { .. }
                | Tok::Complex { .. }
                | Tok::String { .. }
                | Tok::Rpar
                | Tok::Rsqb
                | Tok::Rbrace
                | Tok::Ellipsis
                | Tok::None
                | Tok::True
                | Tok::False,
            _
        ))
    )
}

/// The keyword a compound statement's header starts with (after `async`).
fn header(line: &[(Tok, usize)]) -> Option<&Tok> {
    match line {
        [(Tok::Async, _), (second, _), ..] => Some(second),
        [(first, _), ..] => Some(first),
        [] => None,
    }
}

/// The tokens after the innermost bracket still open at the end of `line`.
fn innermost(line: &[(Tok, usize)]) -> &[(Tok, usize)] {
    let mut open = Vec::new();
    for (i, (tok, _)) in line.iter().enumerate() {
        match tok {
            Tok::Lpar | Tok::Lsqb | Tok::Lbrace => open.push(i),
            Tok::Rpar | Tok::Rsqb | Tok::Rbrace => {
                open.pop();
            }
            _ => {}
        }
    }
    open.last().map_or(line, |&i| &line[i + 1..])
}

/// `a if b` ending an expression (`tokens`, outside brackets): CPython names the missing
/// `else` at the start of `a`.
fn missing_else(tokens: &[(Tok, usize)]) -> Option<(String, usize)> {
    let condition = tokens.iter().rposition(|(tok, _)| *tok == Tok::If)?;
    if condition == 0
        || condition + 1 == tokens.len()
        || tokens
            .iter()
            .any(|(tok, _)| matches!(tok, Tok::For | Tok::Lambda | Tok::Else))
    {
        return None;
    }
    // `a` starts after the last token that cannot be part of it.
    let start = tokens[..condition]
        .iter()
        .rposition(|(tok, _)| {
            matches!(
                tok,
                Tok::Equal
                    | Tok::Comma
                    | Tok::Colon
                    | Tok::ColonEqual
                    | Tok::Return
                    | Tok::Yield
                    | Tok::Assert
                    | Tok::Del
                    | Tok::Raise
            ) || is_augmented_assignment(tok)
        })
        .map_or(0, |i| i + 1);
    let (first, offset) = tokens.get(start).filter(|_| start < condition)?;
    if matches!(first, Tok::If | Tok::Elif | Tok::While) {
        return None;
    }
    Some(("expected 'else' after 'if' expression".to_string(), *offset))
}

fn is_augmented_assignment(tok: &Tok) -> bool {
    matches!(
        tok,
        Tok::PlusEqual
            | Tok::MinusEqual
            | Tok::StarEqual
            | Tok::SlashEqual
            | Tok::DoubleSlashEqual
            | Tok::PercentEqual
            | Tok::AtEqual
            | Tok::AmperEqual
            | Tok::VbarEqual
            | Tok::CircumflexEqual
            | Tok::LeftShiftEqual
            | Tok::RightShiftEqual
            | Tok::DoubleStarEqual
    )
}

/// The line's tokens outside any bracket (brackets themselves and what is in them left out).
fn outside_brackets(line: &[(Tok, usize)]) -> Vec<(Tok, usize)> {
    let mut depth = 0usize;
    let mut outside = Vec::new();
    for (tok, at) in line {
        match tok {
            Tok::Lpar | Tok::Lsqb | Tok::Lbrace => depth += 1,
            Tok::Rpar | Tok::Rsqb | Tok::Rbrace => depth = depth.saturating_sub(1),
            tok if depth == 0 => outside.push((tok.clone(), *at)),
            _ => {}
        }
    }
    outside
}

/// Every bracket the line opened is closed.
fn closed(line: &[(Tok, usize)]) -> bool {
    let depth = line.iter().fold(0i32, |depth, (tok, _)| match tok {
        Tok::Lpar | Tok::Lsqb | Tok::Lbrace => depth + 1,
        Tok::Rpar | Tok::Rsqb | Tok::Rbrace => depth - 1,
        _ => depth,
    });
    depth == 0
}

#[cfg(test)]
mod tests {
    use crate::validation::validate;

    /// (script, line, column, message) as CPython 3.11 gives them.
    fn check(cases: &[(&str, usize, usize, &str)]) {
        for (script, line, column, message) in cases {
            let script = format!("{script}def main():\n    return 1\n");
            let error = validate(&script).expect_err(&script);
            let body = serde_json::to_value(&error.fields).unwrap();
            assert_eq!(
                (error.message.as_str(), &body["line"], &body["column"]),
                (
                    format!("SyntaxError: {message} (line {line}, column {column})").as_str(),
                    &serde_json::json!(line),
                    &serde_json::json!(column)
                ),
                "{script:?}"
            );
        }
    }

    #[test]
    fn a_header_without_its_colon_is_expected_colon() {
        check(&[
            ("for i in range(3)\n    pass\n", 1, 18, "expected ':'"),
            ("if (a and\n    b)\n    pass\n", 2, 7, "expected ':'"),
            (
                "try:\n    pass\nexcept ValueError as e\n    pass\n",
                3,
                23,
                "expected ':'",
            ),
            ("if x:\n    pass\nelse\n    pass\n", 3, 5, "expected ':'"),
            ("async with a\n    pass\n", 1, 13, "expected ':'"),
            ("def f(a, b) -> int\n    pass\n", 1, 19, "expected ':'"),
            ("class A(B, metaclass=M)\n    pass\n", 1, 24, "expected ':'"),
            ("def f(x) return x\n", 1, 10, "expected ':'"),
            ("def f() -> int return 1\n", 1, 16, "expected ':'"),
            ("try pass\n", 1, 5, "expected ':'"),
            ("if x == 1 # comment\n    pass\n", 1, 11, "expected ':'"),
            ("for i in range(3)  # loop\n    pass\n", 1, 20, "expected ':'"),
            ("if (a and  # why\n    b)\n    pass\n", 2, 7, "expected ':'"),
        ]);
        // A header that stops halfway is not missing only its colon: CPython says "invalid
        // syntax" there (this service adds rustpython's words).
        for script in [
            "if x and\n",
            "for x in\n",
            "for x\n",
            "with open(f) as\n",
            "while\n",
            "class\n",
            "def f\n",
        ] {
            let error = validate(&format!("{script}def main():\n    return 1\n")).expect_err(script);
            assert!(
                !error.message.starts_with("SyntaxError: expected"),
                "{script:?}: {}",
                error.message
            );
        }
    }

    #[test]
    fn a_conditional_expression_without_else_is_named() {
        check(&[
            ("x = 1 if y\n", 1, 5, "expected 'else' after 'if' expression"),
            (
                "return_value = f(x) if y\n",
                1,
                16,
                "expected 'else' after 'if' expression",
            ),
            ("x += 1 if y\n", 1, 6, "expected 'else' after 'if' expression"),
            ("print(1 if y)\n", 1, 7, "expected 'else' after 'if' expression"),
            ("x = {'a': 1 if y}\n", 1, 11, "expected 'else' after 'if' expression"),
            ("f(a=1 if y)\n", 1, 5, "expected 'else' after 'if' expression"),
            ("x = [1, 2 if y, 3]\n", 1, 9, "expected 'else' after 'if' expression"),
            (
                "async def f():\n    x = await a if b\n",
                2,
                9,
                "expected 'else' after 'if' expression",
            ),
        ]);
    }
}
