//! Common mistakes, worded and placed as CPython 3.11 words and places them.

use super::super::*;

#[test]
fn common_mistakes_are_worded_and_placed_as_cpython_does() {
    // (script, CPython 3.11's class, message, line and column)
    for (script, class, message, line, column) in [
        (
            "def main():\n    x = 1\n        y = 2\n",
            "IndentationError",
            "unexpected indent",
            3,
            8,
        ),
        (
            "x = 1\n  y = 2\ndef main(): pass\n",
            "IndentationError",
            "unexpected indent",
            2,
            2,
        ),
        (
            "def main():\n        x = 1\n    y = 2\n",
            "IndentationError",
            "unindent does not match any outer indentation level",
            3,
            10,
        ),
        (
            "def main():\nreturn 1\n",
            "IndentationError",
            "expected an indented block after function definition on line 1",
            2,
            1,
        ),
        (
            "@d\ndef main(a,\n  b):\n    # c\n\nreturn 1\n",
            "IndentationError",
            "expected an indented block after function definition on line 2",
            6,
            1,
        ),
        (
            "def main():\n    f = lambda: 1\n    for i in x:\n    pass\n",
            "IndentationError",
            "expected an indented block after 'for' statement on line 3",
            4,
            5,
        ),
        (
            "try:\n    pass\nexcept E:\npass\ndef main(): pass\n",
            "IndentationError",
            "expected an indented block after 'except' statement on line 3",
            4,
            1,
        ),
        (
            "def main():\n    print 'x'\n",
            "SyntaxError",
            "Missing parentheses in call to 'print'. Did you mean print(...)?",
            2,
            5,
        ),
        (
            "def main():\n    x = (1 2)\n",
            "SyntaxError",
            "invalid syntax. Perhaps you forgot a comma?",
            2,
            10,
        ),
        (
            "def main():\n    f(x + y z)\n",
            "SyntaxError",
            "invalid syntax. Perhaps you forgot a comma?",
            2,
            7,
        ),
        (
            "def main():\n    d = {'a': 1 'b': 2}\n",
            "SyntaxError",
            "invalid syntax. Perhaps you forgot a comma?",
            2,
            15,
        ),
        (
            "def main():\n    if x = 1:\n        pass\n",
            "SyntaxError",
            "invalid syntax. Maybe you meant '==' or ':=' instead of '='?",
            2,
            8,
        ),
        (
            "def main():\n    return 0777\n",
            "SyntaxError",
            "leading zeros in decimal integer literals are not permitted; use an 0o prefix for octal integers",
            2,
            12,
        ),
        // Arguments out of order in a call.
        (
            "def main():\n    return max(key=len, 'abc', 'de')\n",
            "SyntaxError",
            "positional argument follows keyword argument",
            2,
            36,
        ),
        (
            "def main():\n    return g(f(**k, 1), 2)\n",
            "SyntaxError",
            "positional argument follows keyword argument unpacking",
            2,
            22,
        ),
        (
            "def main():\n    return f(a, **k, *b)\n",
            "SyntaxError",
            "iterable argument unpacking follows keyword argument unpacking",
            2,
            14,
        ),
        // A line dedented past the block's header: CPython's column is one less.
        (
            "def main():\n    if True:\n        if x:\n    y = 1\n",
            "IndentationError",
            "expected an indented block after 'if' statement on line 3",
            4,
            4,
        ),
        // A block never started: the script ends after its header.
        (
            "def main():\n    # TODO\n",
            "IndentationError",
            "expected an indented block after function definition on line 1",
            2,
            11,
        ),
        (
            "def main():\n    return 1\nclass Config:\n",
            "IndentationError",
            "expected an indented block after class definition on line 3",
            3,
            14,
        ),
        (
            "def main():\n    with x:\n\n\n",
            "IndentationError",
            "expected an indented block after 'with' statement on line 2",
            4,
            1,
        ),
        (
            "def main():\n    return 0x\n",
            "SyntaxError",
            "invalid hexadecimal literal",
            2,
            13,
        ),
        (
            "def main():\n    return [12abc]\n",
            "SyntaxError",
            "invalid decimal literal",
            2,
            14,
        ),
        // No hint where CPython gives none (a comprehension, an import, a soft keyword), at
        // CPython's position.
        (
            "from collections import (\n    Counte,r\n    defaultdict,\n)\ndef main(): pass\n",
            "SyntaxError",
            "invalid syntax",
            3,
            5,
        ),
        (
            "def main():\n    return [match case]\n",
            "SyntaxError",
            "invalid syntax",
            2,
            19,
        ),
        ("def main(a b):\n    pass\n", "SyntaxError", "invalid syntax", 1, 12),
        (
            "def main():\n    x = (a for b in c d)\n",
            "SyntaxError",
            "invalid syntax",
            2,
            23,
        ),
        // A line continuation at the end of the script: just past the backslash.
        ("x = 1 + \\\n", "SyntaxError", "unexpected EOF while parsing", 1, 10),
        ("x = 1 + \\", "SyntaxError", "unexpected EOF while parsing", 1, 10),
        (
            "def f():\n    return 1 + \\\n",
            "SyntaxError",
            "unexpected EOF while parsing",
            2,
            17,
        ),
        ("x = 'é' + \\\n", "SyntaxError", "unexpected EOF while parsing", 1, 12),
        ("x = 1\n\\\n", "SyntaxError", "unexpected EOF while parsing", 2, 2),
        ("y = (1,\n\\", "SyntaxError", "'(' was never closed", 1, 5),
        (
            "def main():\n    yield = 1\n",
            "SyntaxError",
            "assignment to yield expression not possible",
            2,
            5,
        ),
        (
            "def main():\n    yield f(a=1), [b] = 1\n",
            "SyntaxError",
            "assignment to yield expression not possible",
            2,
            5,
        ),
        (
            "def main():\n    yield from g = 1\n",
            "SyntaxError",
            "assignment to yield expression not possible",
            2,
            5,
        ),
    ] {
        let err = validate(script).unwrap_err();
        assert_eq!(
            (&err.fields["line"], &err.fields["column"]),
            (&line.into(), &column.into()),
            "{script:?}: {}",
            err.message
        );
        let expected = format!("{class}: {message}");
        assert!(err.message.starts_with(&expected), "{script:?}: {}", err.message);
        assert!(
            !err.message.contains("forgot a comma") || message.contains("comma"),
            "{}",
            err.message
        );
    }
}
