//! CPython 3.11's "expected 'except' or 'finally' block": a `try` whose block is followed by
//! neither, among the commonest mistakes, where rustpython only says which token it did not
//! expect.

use super::expected::ends_an_expression;
use rustpython_parser::lexer::lex;
use rustpython_parser::text_size::{TextRange, TextSize};
use rustpython_parser::{Mode, Tok};

/// CPython's "expected 'except' or 'finally' block" and its byte offset: a `try` block ended
/// by a statement that is neither (at the `try`'s own indentation, or further out), or by the
/// end of the script (CPython then stands at its last line break). The body may be on the
/// `try`'s own line (`try: pass`).
pub(super) fn missing_handler(script: &str, reported: usize) -> Option<(String, usize)> {
    const MESSAGE: &str = "expected 'except' or 'finally' block";
    // The first token of each open block's header; of the blocks the last dedents closed,
    // inner first; the first and last tokens of this logical line and of the one before.
    let mut open: Vec<Option<Tok>> = Vec::new();
    let mut closed: Vec<Option<Tok>> = Vec::new();
    let (mut first, mut last): (Option<Tok>, Option<Tok>) = (None, None);
    let mut previous: (Option<Tok>, Option<Tok>) = (None, None);
    // The lexer gives no token at the very end, where rustpython may report: one is added.
    let end = TextSize::try_from(script.len()).ok()?;
    let tokens = lex(script, Mode::Module).chain(std::iter::once(Ok((Tok::EndOfFile, TextRange::empty(end)))));
    for token in tokens {
        let (tok, range) = token.ok()?;
        let start = range.start().to_usize();
        // rustpython reports a statement's start where its dedents are, and a script's end
        // where the lexer adds the last line break: those are read, not reported.
        let read_on = tok == Tok::Dedent || (tok == Tok::Newline && range.is_empty());
        if start >= reported && !read_on {
            // Only where a statement may start after a whole one: not inside a line, nor after
            // a header whose block never started (`if x:`) or a decorator.
            let after_whole = previous.1.as_ref().map_or(true, |t| {
                ends_an_expression(t) || matches!(t, Tok::Pass | Tok::Break | Tok::Continue | Tok::Return)
            });
            if first.is_some() || !after_whole || previous.0 == Some(Tok::At) {
                return None;
            }
            let same_line_try = previous.0 == Some(Tok::Try);
            if script[start..].trim().is_empty() {
                let end = script.strip_suffix('\n').map_or(script.len(), str::len);
                let open_try = same_line_try || open.iter().chain(&closed).any(|b| *b == Some(Tok::Try));
                return open_try.then(|| (MESSAGE.to_string(), end));
            }
            let handler = matches!(tok, Tok::Except | Tok::Finally);
            let (inner_try, outermost_try) = match closed.split_last() {
                Some((outermost, inner)) => (
                    same_line_try || inner.contains(&Some(Tok::Try)),
                    *outermost == Some(Tok::Try),
                ),
                None => (false, same_line_try),
            };
            // CPython stops at a dedent there, which it places a column before the statement.
            let at = if inner_try && script[..start].ends_with([' ', '\t']) {
                start - 1
            } else {
                start
            };
            return (inner_try || (outermost_try && !handler)).then(|| (MESSAGE.to_string(), at));
        }
        match tok {
            Tok::Newline => {
                previous = (first.take(), last.take());
                closed.clear();
            }
            Tok::Indent => open.push(previous.0.clone()),
            Tok::Dedent => closed.push(open.pop().flatten()),
            tok => {
                first.get_or_insert_with(|| tok.clone());
                last = Some(tok);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::validation::validate;

    #[test]
    fn a_try_without_except_or_finally_is_expected_except() {
        let message = "expected 'except' or 'finally' block";
        // (script, line, column) as CPython 3.11 gives them: after a statement, at the end of
        // the script (at its last line break, or its end without one), with a body on the
        // `try`'s own line.
        for (script, line, column) in [
            ("try:\n    pass\nx = 1\n", 3, 1),
            ("try:\n    pass\nelse:\n    pass\n", 3, 1),
            ("class A:\n    try:\n        pass\n\n    y = 2\n", 5, 5),
            // Closed from further out, CPython stops a column before the statement.
            ("if 1:\n    if 2:\n        try:\n            pass\n    x = 1\n", 5, 4),
            ("if 1:\n    try:\n        if 2:\n            pass\n    x = 1\n", 5, 5),
            ("def main():\n    try:\n        pass", 3, 13),
            ("def main():\n    try:\n        pass  # c\n", 3, 18),
            ("def main():\n    try:\n        pass\n  \n", 4, 3),
            ("def main():\n    if 1:\n        try:\n            pass\n", 4, 17),
            ("try: pass\nx = 1\n", 2, 1),
            ("def f():\n    try: pass\n    return 1\n", 3, 5),
            ("try: pass\n", 1, 10),
            ("try: pass\n# c\n\n", 3, 1),
            ("if 1:\n    try:\n        try: x\n    y\n", 4, 4),
            ("try:\n    f()\n", 2, 8),
        ] {
            let error = validate(script).expect_err(script);
            let expected = format!("SyntaxError: {message} (line {line}, column {column})");
            assert_eq!(error.message, expected, "{script:?}");
        }
        // Not where a try's block ends in a mistake of its own: a header whose block never
        // started, a decorator without what it decorates, a statement cut short.
        for script in [
            "def main():\n    try:\n        if x:\n    return 1\n",
            "try:\n    try:\n",
            "try:\n    pass\n    @dec\nx = 1\n",
            "try:\n    pass\n    @dec\n",
            "def main():\n    try:\n        x = 1 +\n",
            "try:\n    x = 1 +",
            "try:\n    x.\n",
        ] {
            let error = validate(script).expect_err(script);
            assert!(!error.message.contains(message), "{script:?}: {}", error.message);
        }
        // Not where the block has its handler, nor for another mistake after one.
        for script in [
            "def main():\n    try:\n        pass\n    except E:\n        pass\n    x = = 1\n",
            "def main():\n    try:\n        pass\n    finally:\n        pass\n    except:\n        pass\n",
        ] {
            let error = validate(script).expect_err(script);
            assert!(
                error.message.starts_with("SyntaxError: invalid syntax"),
                "{script:?}: {}",
                error.message
            );
        }
    }
}
