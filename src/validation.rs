//! Checks a script before anything runs: it must parse as Python 3.11 and define `main` at
//! module level. The same pass notes whether it imports numpy or pandas, so it can be given a
//! jail that has them imported already.

use crate::error::{ApiError, ErrorKind};
use crate::jail::DATA_LIBRARIES;
use rustpython_parser::ast::{self, Stmt};
use rustpython_parser::lexer::LexicalErrorType;
use rustpython_parser::{Parse, ParseErrorType};

mod blocks;
mod calls;
mod dicts;
mod expected;
mod fstring;
mod handlers;
mod indentation;
mod main_names;
mod number;
mod position;
mod python2;
mod strings;
mod syntax;

use main_names::may_be_main;
use position::line_column;
use syntax::{parse_error, syntax_error};
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
        main_takes_input: match main_takes_input(&mains) {
            Some(_) if main_bound_otherwise(&suite, true) || main_names::bound_dynamically(script) => None,
            known => known,
        },
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
        if may_be_main(name) {
            found.push(MainDef {
                exact: name == "main",
                args,
                decorated: !decorators.is_empty(),
            });
        }
    }
}

/// Whether something other than a `def` may bind `main` in module scope: an assignment, an
/// import, a class, a loop, `with`, `except` or `case` target, `del`, or a `global main` anywhere
/// (`main = lambda data: ...` after a `def main()`). Then only the running script can tell
/// what `main` takes.
fn main_bound_otherwise(body: &[Stmt], module_scope: bool) -> bool {
    body.iter().any(|stmt| {
        let binds = module_scope
            && match stmt {
                Stmt::Assign(s) => s.targets.iter().any(names_main),
                Stmt::AugAssign(s) => names_main(&s.target),
                Stmt::AnnAssign(s) => names_main(&s.target),
                Stmt::Delete(s) => s.targets.iter().any(names_main),
                Stmt::For(s) => names_main(&s.target),
                Stmt::AsyncFor(s) => names_main(&s.target),
                Stmt::With(s) => s
                    .items
                    .iter()
                    .any(|i| i.optional_vars.as_deref().is_some_and(names_main)),
                Stmt::AsyncWith(s) => s
                    .items
                    .iter()
                    .any(|i| i.optional_vars.as_deref().is_some_and(names_main)),
                Stmt::Import(s) => s.names.iter().any(|a| {
                    may_be_main(
                        a.asname
                            .as_ref()
                            .map_or_else(|| a.name.split('.').next().unwrap_or(""), |n| n.as_str()),
                    )
                }),
                Stmt::ImportFrom(s) => s
                    .names
                    .iter()
                    .any(|a| a.name.as_str() == "*" || may_be_main(a.asname.as_ref().unwrap_or(&a.name).as_str())),
                Stmt::ClassDef(s) => may_be_main(s.name.as_str()),
                Stmt::Match(s) => s.cases.iter().any(|c| pattern_names_main(&c.pattern)),
                Stmt::Try(s) => handlers_name_main(&s.handlers),
                Stmt::TryStar(s) => handlers_name_main(&s.handlers),
                _ => false,
            };
        let declared_global = matches!(stmt, Stmt::Global(s) if s.names.iter().any(|n| may_be_main(n.as_str())));
        binds || declared_global || {
            let (nested, in_scope) = blocks(stmt);
            nested
                .into_iter()
                .any(|block| main_bound_otherwise(block, module_scope && in_scope))
        }
    })
}

fn names_main(target: &ast::Expr) -> bool {
    match target {
        ast::Expr::Name(n) => may_be_main(n.id.as_str()),
        ast::Expr::Tuple(t) => t.elts.iter().any(names_main),
        ast::Expr::List(l) => l.elts.iter().any(names_main),
        ast::Expr::Starred(s) => names_main(&s.value),
        _ => false,
    }
}

/// Whether a `case` pattern captures into `main` (`case main:`, `case [*main]`, `case {**main}`,
/// `case int() as main`).
fn pattern_names_main(pattern: &ast::Pattern) -> bool {
    use ast::Pattern as P;
    let named = |name: &Option<ast::Identifier>| name.as_ref().is_some_and(|n| may_be_main(n.as_str()));
    match pattern {
        P::MatchAs(p) => named(&p.name) || p.pattern.as_deref().is_some_and(pattern_names_main),
        P::MatchStar(p) => named(&p.name),
        P::MatchMapping(p) => named(&p.rest) || p.patterns.iter().any(pattern_names_main),
        P::MatchSequence(p) => p.patterns.iter().any(pattern_names_main),
        P::MatchOr(p) => p.patterns.iter().any(pattern_names_main),
        P::MatchClass(p) => p.patterns.iter().chain(&p.kwd_patterns).any(pattern_names_main),
        P::MatchValue(_) | P::MatchSingleton(_) => false,
    }
}

fn handlers_name_main(handlers: &[ast::ExceptHandler]) -> bool {
    handlers.iter().any(|h| {
        let ast::ExceptHandler::ExceptHandler(h) = h;
        h.name.as_ref().is_some_and(|n| may_be_main(n.as_str()))
    })
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
mod tests;

/// Validation must never reject what CPython 3.11 accepts: a corpus of real-world-shaped
/// scripts (tests/corpus), each checked against CPython itself and against the validator.
#[cfg(test)]
mod corpus;
