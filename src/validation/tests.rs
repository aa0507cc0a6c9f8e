//! The validator's unit tests: what it accepts, what it refuses, and how it says so.

use super::*;

mod mistakes;

fn kind(script: &str) -> &'static str {
    match validate(script) {
        Ok(_) => "ok",
        Err(e) => e.kind.as_str(),
    }
}

#[test]
fn accepts_main_in_its_forms() {
    assert_eq!(kind("def main():\n    return 1\n"), "ok");
    assert_eq!(kind("async def main():\n    return 1\n"), "ok");
    assert_eq!(
        kind("import functools\n@functools.cache\ndef main():\n    return 1\n"),
        "ok"
    );
    assert_eq!(
        kind("try:\n    import x\nexcept ImportError:\n    pass\nif True:\n    def main(): pass\n"),
        "ok"
    );
}

#[test]
fn rejects_missing_or_nested_main() {
    assert_eq!(kind("x = 1\n"), "missing_main");
    assert_eq!(kind(""), "missing_main");
    assert_eq!(kind("def helper():\n    def main(): pass\n"), "missing_main");
    assert_eq!(kind("class C:\n    def main(self): pass\n"), "missing_main");
    assert_eq!(kind("main = lambda: 1\n"), "missing_main");
    assert_eq!(kind("def Main(): pass\n"), "missing_main");
}

#[test]
fn syntax_errors_carry_one_based_line_and_column() {
    let err = validate("def main():\n    return (1,\n").unwrap_err();
    assert_eq!(err.kind, ErrorKind::SyntaxError);
    assert!(err.fields["line"].as_u64().unwrap() >= 2);
    assert!(err.fields["column"].as_u64().unwrap() >= 1);

    let err = validate("def main():\n    x = = 2\n").unwrap_err();
    assert_eq!(err.fields["line"], 2);
    assert_eq!(err.fields["column"], 9);
}

#[test]
fn unclosed_brackets_and_strings_are_located_where_cpython_locates_them() {
    // (script, CPython 3.11's line, column and message)
    for (script, line, column, message) in [
        ("def main():\n    x = (1,\n    return x\n", 2, 9, "'(' was never closed"),
        ("def main():\n    return [1, 2\n", 2, 12, "'[' was never closed"),
        ("x = (1, [2\n", 1, 9, "'[' was never closed"),
        // No final newline: the parser runs out of source on the bracket's own line.
        ("def main():\n    return (", 2, 12, "'(' was never closed"),
        ("def main():\n    return (1,  # c", 2, 12, "'(' was never closed"),
        ("(", 1, 1, "'(' was never closed"),
        (
            "def main():\n    return r'\\'\n",
            2,
            12,
            "unterminated string literal (detected at line 2)",
        ),
        (
            "x = 'é' + 'abc\n",
            1,
            11,
            "unterminated string literal (detected at line 1)",
        ),
        (
            "def main():\n    return b'abc\n",
            2,
            12,
            "unterminated string literal (detected at line 2)",
        ),
        (
            "x = \"\"\"\nabc\n\n",
            1,
            5,
            "unterminated triple-quoted string literal (detected at line 3)",
        ),
        (
            "foo(1 2)\nx = 'abc\n",
            2,
            5,
            "unterminated string literal (detected at line 2)",
        ),
        ("x = }\ndef main(): pass\n", 1, 5, "unmatched '}'"),
        ("def main():\n    return 1\n)\n", 3, 1, "unmatched ')'"),
        (
            "x = (1]\n",
            1,
            7,
            "closing parenthesis ']' does not match opening parenthesis '('",
        ),
        (
            "x = (1,\n 2]\n",
            2,
            3,
            "closing parenthesis ']' does not match opening parenthesis '(' on line 1",
        ),
        // A bracket open on the line the parser stopped at is not blamed.
        ("def main(:\n    return 1\n", 1, 10, "invalid syntax"),
        ("def f(:\n  pass\nx = (\n", 1, 7, "invalid syntax"),
    ] {
        let err = validate(script).unwrap_err();
        assert_eq!(err.kind, ErrorKind::SyntaxError, "{script:?}");
        assert_eq!(
            (&err.fields["line"], &err.fields["column"]),
            (&line.into(), &column.into()),
            "{script:?}: {}",
            err.message
        );
        assert!(
            err.message.starts_with(&format!("SyntaxError: {message}")),
            "{script:?}: {}",
            err.message
        );
    }
}

#[test]
fn null_bytes_are_syntax_errors() {
    let err = validate("def main():\n    return 1\0\n").unwrap_err();
    assert_eq!(err.kind, ErrorKind::SyntaxError);
    assert_eq!(err.fields["line"], 2);
    assert_eq!(err.fields["column"], 13);
}

#[test]
fn accepts_consistent_tabs_after_spaces() {
    assert_eq!(kind("def main():\n  \tx = 1\n  \treturn x\n"), "ok");
    assert_eq!(kind("def main():\n        x = 1\n\treturn x\n"), "syntax_error");
}

#[test]
fn main_in_letters_python_normalises() {
    assert_eq!(kind("def \u{ff4d}\u{ff41}\u{ff49}\u{ff4e}():\n    return 1\n"), "ok");
    assert_eq!(
        kind("def \u{1d52a}\u{1d51e}\u{1d526}\u{1d52b}():\n    return 1\n"),
        "ok"
    );
    assert_eq!(kind("def caf\u{e9}():\n    return 1\n"), "missing_main");
}

#[test]
fn string_mistakes_are_worded_and_placed_as_cpython_does() {
    // (script, CPython 3.11's message, line and column): where its parser stood after the
    // string and the strings joined to it.
    for (script, message, line, column) in [
        ("x = f'{'\n", "f-string: expecting '}'", 1, 9),
        ("x = f'{}' + 1\n", "f-string: empty expression not allowed", 1, 11),
        (
            "x = f'{x!z}'\n",
            "f-string: invalid conversion character: expected 's', 'r', or 'a'",
            1,
            13,
        ),
        ("x = f'{:x}'\n", "f-string: expression required before ':'", 1, 12),
        ("x = f'{x:{=}}'\n", "f-string: expression required before '='", 1, 15),
        ("x = f'}'   # c\n", "f-string: single '}' is not allowed", 1, 12),
        (
            "x = f'{\\n}'\n",
            "f-string expression part cannot include a backslash",
            1,
            12,
        ),
        (
            "x = f'{d[\"#\"]}' f'{#}'\n",
            "f-string expression part cannot include '#'",
            1,
            23,
        ),
        ("x = (f'{' # c\n     'b'\n)\n", "f-string: expecting '}'", 3, 1),
        ("x = f'''\n{\n'''\n", "f-string: expecting '}'", 3, 4),
        ("x = f'{x:{y:{z}}}'\n", "f-string: expressions nested too deeply", 1, 19),
        ("x = b'a' 'é'\n", "cannot mix bytes and nonbytes literals", 1, 13),
        // Escapes CPython's decoder refuses, and characters no token starts with.
        (
            "df = pd.read_csv('C:\\Users\\me\\data.csv')\n",
            "(unicode error) 'unicodeescape' codec can't decode bytes in position 2-3: truncated \\UXXXXXXXX escape",
            1,
            40,
        ),
        ("x = b'\\x4'\n", "(value error) invalid \\x escape at position 0", 1, 11),
        ("x = “hello”\n", "invalid character '“' (U+201C)", 1, 5),
        ("x = 1 +\u{a0}2\n", "invalid non-printable character U+00A0", 1, 8),
        ("x$ = 1\n", "invalid syntax", 1, 2),
        ("x = 1\u{1b}\n", "invalid non-printable character U+001B", 1, 6),
        ("x = f(a😀)\n", "invalid character '😀' (U+1F600)", 1, 8),
        ("x = f\"{x'}\"\n", "f-string: unterminated string", 1, 12),
        // CPython's tokenizer reads the whole source once its parser has failed.
        ("x = f(1 2)\ny = 12abc\n", "invalid decimal literal", 2, 6),
    ] {
        let script = format!("{script}def main():\n    pass\n");
        let err = validate(&script).expect_err(&script);
        assert_eq!(
            (&err.fields["line"], &err.fields["column"]),
            (&line.into(), &column.into()),
            "{script:?}: {}",
            err.message
        );
        let expected = format!("SyntaxError: {message} (line {line}, column {column})");
        assert_eq!(err.message, expected, "{script:?}");
    }
}

#[test]
fn knows_whether_main_takes_input() {
    let takes = |s: &str| validate(s).unwrap().main_takes_input;
    assert_eq!(takes("def main():\n    pass\n"), Some(false));
    assert_eq!(takes("def main(*, flag=1):\n    pass\n"), Some(false));
    assert_eq!(takes("def main(data):\n    pass\n"), Some(true));
    assert_eq!(takes("async def main(data=None, /):\n    pass\n"), Some(true));
    assert_eq!(takes("def main(*args):\n    pass\n"), Some(true));
    assert_eq!(
        takes("import functools\n@functools.cache\ndef main():\n    pass\n"),
        None
    );
    assert_eq!(
        takes("if 1:\n    def main(): pass\nelse:\n    def main(x): pass\n"),
        None
    );
    assert_eq!(takes("def \u{ff4d}\u{ff41}\u{ff49}\u{ff4e}():\n    pass\n"), None);
    // Bound otherwise as well, in module scope or through `global`: only running tells.
    for rebinding in [
        "main = lambda data: data",
        "main, other = (lambda data: data), 1",
        "main: object = print",
        "from helpers import run as main",
        "from helpers import *",
        "import main",
        "class main:\n    pass",
        "for main in [print]:\n    pass",
        "with open('f') as main:\n    pass",
        "try:\n    pass\nexcept Exception as main:\n    pass",
        "if True:\n    main = print",
        "def setup():\n    global main\n    main = print",
        "del main",
        "[main := (lambda data: data)]",
        "if (main := print):\n    pass",
        "x = [main := f for f in [print]]",
        "match print:\n    case main:\n        pass",
        "match [print]:\n    case [*main]:\n        pass",
        "match {}:\n    case {'k': 1, **main}:\n        pass",
        "match print:\n    case object() | [object() as main]:\n        pass",
        "main.__code__ = (lambda data: data).__code__",
        "exec('def main(data): return data')",
        "globals().update(main=print)",
        "globals()['main'] = print",
        "import sys\nsetattr(sys.modules[__name__], 'main', print)",
        "vars()['main'] = print",
    ] {
        let script = format!("def main():\n    pass\n{rebinding}\n");
        assert_eq!(takes(&script), None, "{rebinding}");
    }
    // Not bindings of the module's main.
    for other in [
        "if __name__ == '__main__':\n    main()",
        "def helper():\n    main = 1\n    return main",
        "class Job:\n    main = None",
        "import main_helpers",
        "x = [main for main in range(3)]",
        "def helper():\n    main = 1\n    return main.real",
        "match print:\n    case other:\n        pass",
        "print(main.__name__)\nx = main.__doc__ == None",
        "total = (n := 3) + n",
    ] {
        let script = format!("def main():\n    pass\n{other}\n");
        assert_eq!(takes(&script), Some(false), "{other}");
    }
}

#[test]
fn notes_data_library_imports_anywhere() {
    let info = |s: &str| validate(s).unwrap().imports_data_libraries;
    assert!(info("import pandas as pd\ndef main(): pass\n"));
    assert!(info("def main():\n    import numpy.linalg\n"));
    assert!(info(
        "def main():\n    try:\n        from pandas import DataFrame\n    finally:\n        pass\n"
    ));
    assert!(!info("import json\ndef main(): pass\n"));
    assert!(!info("import numpyish\ndef main(): pass\n"));
    assert!(!info("from . import pandas\ndef main(): pass\n"));
}

#[test]
fn notes_matplotlib_imports_anywhere() {
    let info = |s: &str| validate(s).unwrap();
    let chart = |s: &str| info(s).imports_chart_library;
    assert!(chart("import matplotlib.pyplot as plt\ndef main(): pass\n"));
    assert!(chart("import json, matplotlib\ndef main(): pass\n"));
    assert!(chart("def main():\n    from matplotlib import pyplot\n"));
    assert!(chart(
        "import pandas\ndef main():\n    if 1:\n        import matplotlib.pyplot\n"
    ));
    assert!(info("import pandas\nimport matplotlib\ndef main(): pass\n").imports_data_libraries);
    assert!(!chart("import pandas\ndef main(): pass\n"));
    assert!(!chart("import matplotlibx\ndef main(): pass\n"));
    assert!(!chart("from .matplotlib import x\ndef main(): pass\n"));
}
