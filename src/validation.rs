//! Checks a script before anything runs: it must parse as Python 3.11 and define `main` at
//! module level. The same pass notes whether it imports numpy or pandas, so it can be given a
//! jail that has them imported already.

use crate::error::{ApiError, ErrorKind};
use crate::jail::DATA_LIBRARIES;
use rustpython_parser::ast::{self, Stmt};
use rustpython_parser::lexer::LexicalErrorType;
use rustpython_parser::{Parse, ParseErrorType};

mod indentation;
mod syntax;

use syntax::{line_column, parse_error, syntax_error};
mod threads;

pub use threads::{ParseFn, ParserThreads};

/// What the service learned about a valid script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptInfo {
    /// The script imports numpy or pandas somewhere (module level or inside functions).
    pub imports_data_libraries: bool,
    /// Whether `main` takes a positional parameter (for `input`): `None` when only running the
    /// script can tell (a decorated `main`, or one named in letters Python normalises to it).
    pub main_takes_input: Option<bool>,
    /// The script imports matplotlib somewhere: its jail has pyplot loaded too.
    pub imports_chart_library: bool,
}

/// The async workers' stack size (set in main), which bounds what `threads` validates inline.
pub const RUNTIME_STACK_BYTES: usize = 8 << 20;

pub fn validate(script: &str) -> Result<ScriptInfo, ApiError> {
    if let Some(offset) = script.find('\0') {
        let (line, column) = line_column(script, offset);
        return Err(syntax_error("source code cannot contain null bytes", line, column));
    }
    let suite = match ast::Suite::parse(script, "<script>") {
        Ok(suite) => suite,
        Err(err) if is_tab_error(&err.error) => indentation::parse_with_tabs(script)?,
        Err(err) => return Err(parse_error(script, &err)),
    };
    let mut mains = Vec::new();
    find_main(&suite, &mut mains);
    if mains.is_empty() {
        return Err(ApiError::new(
            ErrorKind::MissingMain,
            "the script must define main() at module level (def main or async def main)",
        ));
    }
    let mut info = ScriptInfo {
        imports_data_libraries: false,
        main_takes_input: main_takes_input(&mains),
        imports_chart_library: false,
    };
    note_imports(&suite, &mut info);
    Ok(info)
}

/// rustpython refuses tabs after spaces in indentation, which CPython accepts when consistent.
fn is_tab_error(error: &ParseErrorType) -> bool {
    matches!(
        error,
        ParseErrorType::Lexical(LexicalErrorType::TabError | LexicalErrorType::TabsAfterSpaces)
    )
}

fn handler_bodies(handlers: &[ast::ExceptHandler]) -> Vec<&[Stmt]> {
    handlers
        .iter()
        .map(|h| {
            let ast::ExceptHandler::ExceptHandler(h) = h;
            &h.body[..]
        })
        .collect()
}

/// The blocks of statements nested directly in a compound statement, with `in_scope` telling
/// whether they run in the enclosing scope (if/try/with/loops) or a new one (def, class).
fn blocks(stmt: &Stmt) -> (Vec<&[Stmt]>, bool) {
    match stmt {
        Stmt::FunctionDef(s) => (vec![&s.body[..]], false),
        Stmt::AsyncFunctionDef(s) => (vec![&s.body[..]], false),
        Stmt::ClassDef(s) => (vec![&s.body[..]], false),
        Stmt::If(s) => (vec![&s.body[..], &s.orelse[..]], true),
        Stmt::For(s) => (vec![&s.body[..], &s.orelse[..]], true),
        Stmt::AsyncFor(s) => (vec![&s.body[..], &s.orelse[..]], true),
        Stmt::While(s) => (vec![&s.body[..], &s.orelse[..]], true),
        Stmt::With(s) => (vec![&s.body[..]], true),
        Stmt::AsyncWith(s) => (vec![&s.body[..]], true),
        Stmt::Try(s) => {
            let mut all = vec![&s.body[..], &s.orelse[..], &s.finalbody[..]];
            all.extend(handler_bodies(&s.handlers));
            (all, true)
        }
        Stmt::TryStar(s) => {
            let mut all = vec![&s.body[..], &s.orelse[..], &s.finalbody[..]];
            all.extend(handler_bodies(&s.handlers));
            (all, true)
        }
        Stmt::Match(s) => (s.cases.iter().map(|c| &c.body[..]).collect(), true),
        _ => (Vec::new(), true),
    }
}

/// A module-scope definition that is, or may be, `main`.
struct MainDef<'a> {
    /// Spelled `main` in ASCII; otherwise in other letters that Python's NFKC normalisation
    /// may turn into `main` (`ｍａｉｎ`, `𝔪𝔞𝔦𝔫`): the runner, inside the sandbox, decides.
    exact: bool,
    args: &'a ast::Arguments,
    decorated: bool,
}

/// `def main` / `async def main` in module scope: at top level or inside top-level `if`,
/// `try`, `with`, `for`, `while` or `match` blocks, which Python also runs in module scope.
fn find_main<'a>(body: &'a [Stmt], found: &mut Vec<MainDef<'a>>) {
    for stmt in body {
        let (name, args, decorators) = match stmt {
            Stmt::FunctionDef(def) => (def.name.as_str(), &*def.args, &def.decorator_list),
            Stmt::AsyncFunctionDef(def) => (def.name.as_str(), &*def.args, &def.decorator_list),
            other => {
                if let (nested, true) = blocks(other) {
                    nested.into_iter().for_each(|block| find_main(block, found));
                }
                continue;
            }
        };
        if name == "main" || (!name.is_ascii() && could_normalise_to_main(name)) {
            found.push(MainDef {
                exact: name == "main",
                args,
                decorated: !decorators.is_empty(),
            });
        }
    }
}

/// Python NFKC-normalises identifiers; without Unicode tables here, a non-ASCII name of four
/// letters none of which is ASCII but `m`, `a`, `i`, `n` in order may be `main`.
fn could_normalise_to_main(name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    chars.len() == 4 && chars.iter().zip("main".chars()).all(|(&c, m)| c == m || !c.is_ascii())
}

/// `Some(true)` if every definition of `main` takes a positional argument, `Some(false)` if
/// none does, `None` when only the running script can tell.
fn main_takes_input(mains: &[MainDef]) -> Option<bool> {
    let mut answers = mains.iter().map(|def| {
        if !def.exact || def.decorated {
            return None;
        }
        let args = def.args;
        Some(!args.posonlyargs.is_empty() || !args.args.is_empty() || args.vararg.is_some())
    });
    let first = answers.next()??;
    answers.all(|a| a == Some(first)).then_some(first)
}

/// Looks for `import numpy`, `from pandas.x import y`, `import matplotlib.pyplot` and the
/// like in every block.
fn note_imports(body: &[Stmt], info: &mut ScriptInfo) {
    let note = |module: &str, info: &mut ScriptInfo| {
        let top = module.split('.').next().unwrap_or(module);
        if DATA_LIBRARIES.contains(&top) {
            info.imports_data_libraries = true;
        }
        if top == "matplotlib" {
            info.imports_chart_library = true;
        }
    };
    for stmt in body {
        if info.imports_data_libraries && info.imports_chart_library {
            return;
        }
        match stmt {
            Stmt::Import(s) => {
                for alias in &s.names {
                    note(alias.name.as_str(), info);
                }
            }
            Stmt::ImportFrom(s) => {
                if s.level.map_or(0, |l| l.to_u32()) == 0 {
                    if let Some(module) = &s.module {
                        note(module.as_str(), info);
                    }
                }
            }
            other => {
                for nested in blocks(other).0 {
                    note_imports(nested, info);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

/// Validation must never reject what CPython 3.11 accepts: a corpus of real-world-shaped
/// scripts (tests/corpus), each checked against CPython itself and against the validator.
#[cfg(test)]
mod corpus;
