//! Two of CPython 3.11's "expected ..." messages for a logical line its parser gave up on: a
//! compound statement's header without its colon (`for i in range(3)`, `def main()`), and a
//! conditional expression without its `else` (`x = 1 if y`). Among the commonest mistakes;
//! rustpython only says which token it did not expect. (A `try` without `except` or `finally`
//! is `handlers`'.)

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
    // A comprehension in a header may be an unparenthesized generator, which CPython names.
    let comprehension = line.iter().skip(1).any(|(tok, _)| *tok == Tok::For);
    let body = &line[usize::from(matches!(line.first(), Some((Tok::Async, _))))..];
    match header(line) {
        Some(Tok::Try | Tok::Finally | Tok::Else) => line.len() == 1,
        Some(Tok::Except) => line.len() == 1 || last_ends_an_expression(line),
        Some(Tok::For) => {
            let targets: Vec<&(Tok, usize)> = body.iter().skip(1).take_while(|(tok, _)| *tok != Tok::In).collect();
            last_ends_an_expression(line)
                && outside.iter().any(|(tok, _)| *tok == Tok::In)
                && assignable(&targets)
                && !body.iter().skip(1).any(|(tok, _)| *tok == Tok::For)
        }
        Some(Tok::With) => {
            // Each `as` names a target CPython can assign to.
            let mut targets = Vec::new();
            let mut after_as = false;
            for token in line {
                match token.0 {
                    Tok::As => after_as = true,
                    Tok::Comma if outside.contains(token) => after_as = false,
                    _ if after_as => targets.push(token),
                    _ => {}
                }
            }
            let no_target = !line.iter().any(|(tok, _)| *tok == Tok::As);
            line.len() > 1 && last_ends_an_expression(line) && (no_target || assignable(&targets)) && !comprehension
        }
        // `class Name` or `class Name(...)`, nothing else (3.11 has no type parameters).
        Some(Tok::Class) => {
            matches!(line.get(1), Some((Tok::Name { .. }, _)))
                && (line.len() == 2 || matches!(line.get(2), Some((Tok::Lpar, _))) && closed(line))
                && last_ends_an_expression(line)
                && !comprehension
        }
        Some(Tok::If | Tok::Elif | Tok::While) => line.len() > 1 && last_ends_an_expression(line) && !comprehension,
        Some(Tok::Def) => def_is_whole(line, &outside),
        _ => false,
    }
}

/// Tokens that can only make a target CPython assigns to (names, attributes, tuples and
/// lists of them, starred): a literal, an operator or a call there is its own error.
fn assignable(targets: &[&(Tok, usize)]) -> bool {
    let calls = targets.windows(2).any(|pair| {
        matches!(
            (&pair[0].0, &pair[1].0),
            (Tok::Name { .. } | Tok::Rpar | Tok::Rsqb, Tok::Lpar)
        )
    });
    !targets.is_empty()
        && !calls
        && targets.iter().all(|(tok, _)| {
            matches!(
                tok,
                Tok::Name { .. } | Tok::Comma | Tok::Lpar | Tok::Rpar | Tok::Lsqb | Tok::Rsqb | Tok::Dot | Tok::Star
            )
        })
}

/// `def name(...)`, with `-> annotation` if any, all brackets closed.
fn def_is_whole(line: &[(Tok, usize)], outside: &[(Tok, usize)]) -> bool {
    let start = usize::from(matches!(line.first(), Some((Tok::Async, _))));
    let named = matches!(
        line.get(start..start + 3),
        Some([(Tok::Def, _), (Tok::Name { .. }, _), (Tok::Lpar, _)])
    );
    // A bare `*` with no parameter after it is its own error.
    let bare_star = line.windows(3).any(|w| {
        matches!(
            (&w[0].0, &w[1].0, &w[2].0),
            (Tok::Lpar | Tok::Comma, Tok::Star, Tok::Rpar)
        ) || matches!(
            (&w[0].0, &w[1].0, &w[2].0),
            (Tok::Star, Tok::Comma, Tok::DoubleStar | Tok::Rpar)
        )
    });
    let annotated = outside.iter().any(|(tok, _)| *tok == Tok::Rarrow);
    named
        && !bare_star
        && closed(line)
        && (matches!(line.last(), Some((Tok::Rpar, _))) && !annotated || annotated && last_ends_an_expression(line))
}

/// The line's last token can end an expression.
fn last_ends_an_expression(line: &[(Tok, usize)]) -> bool {
    line.last().is_some_and(|(tok, _)| ends_an_expression(tok))
}

/// A token that can end an expression: a name, a literal, a closing bracket.
pub(super) fn ends_an_expression(tok: &Tok) -> bool {
    matches!(
        tok,
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
            | Tok::False
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
    innermost_open(line).map_or(line, |i| &line[i + 1..])
}

/// The index of the innermost bracket still open at the end of `line`.
pub(super) fn innermost_open(line: &[(Tok, usize)]) -> Option<usize> {
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
    open.last().copied()
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
    // `*a if b` in a call or a display: the operand is `a`.
    let start = start + usize::from(matches!(tokens.get(start), Some((Tok::Star | Tok::DoubleStar, _))));
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
pub(super) fn outside_brackets(line: &[(Tok, usize)]) -> Vec<(Tok, usize)> {
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
            ("for a.b, (c, *d) in e\n    pass\n", 1, 22, "expected ':'"),
            ("with a as (b, c), d as e.f\n    pass\n", 1, 27, "expected ':'"),
        ]);
        // A header that stops halfway, or has another error CPython names first (a target it
        // cannot assign to, type parameters, a bare `*`, an unparenthesized generator), is not
        // missing only its colon.
        for script in [
            "if x and\n",
            "for x in\n",
            "for x\n",
            "with open(f) as\n",
            "while\n",
            "class\n",
            "def f\n",
            "for 1 in x\n",
            "for f() in x\n",
            "for x + 1 in y\n",
            "for (a := 1) in b\n",
            "with a as f()\n",
            "with a as 1\n",
            "with a as b + c\n",
            "class A[T]\n",
            "class A[T](B)\n",
            "def f(*, **k)\n",
            "if f(x for x in y, 1)\n",
            "class A(x for x in y, 1)\n",
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
    fn keyword_constants_end_and_start_expressions_for_the_comma_hint() {
        let hint = "invalid syntax. Perhaps you forgot a comma?";
        check(&[
            ("x = [None True]\n", 1, 6, hint),
            ("f(1 None)\n", 1, 3, hint),
            ("x = (... 2)\n", 1, 6, hint),
        ]);
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
            ("f(*a if b)\n", 1, 4, "expected 'else' after 'if' expression"),
            ("f(**a if b)\n", 1, 5, "expected 'else' after 'if' expression"),
            ("x = a * b if c\n", 1, 5, "expected 'else' after 'if' expression"),
            (
                "async def f():\n    x = await a if b\n",
                2,
                9,
                "expected 'else' after 'if' expression",
            ),
        ]);
    }
}
