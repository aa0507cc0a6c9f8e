//! Ways a script may bind or change `main` that no statement shows: a walrus (`main := ...`,
//! in any expression), an attribute of it set (`main.__code__ = ...`), or the builtins that
//! bind names given as strings (`exec`, `globals`, `setattr`, `vars`). Then only the running
//! script can tell what `main` takes.

use super::may_be_main;
use rustpython_parser::lexer::lex;
use rustpython_parser::{Mode, Tok};

const BINDS_BY_NAME: &[&str] = &["exec", "globals", "setattr", "vars"];

pub(super) fn main_bound_dynamically(script: &str) -> bool {
    // Most scripts have none of these: no second pass of the lexer for them.
    let attribute_of_main = script.contains('.') && (script.contains("main") || !script.is_ascii());
    if !attribute_of_main && !script.contains(":=") && !BINDS_BY_NAME.iter().any(|n| script.contains(n)) {
        return false;
    }
    // The three tokens before this one, the nearest last.
    let mut before: [Option<Tok>; 3] = [None, None, None];
    for token in lex(script, Mode::Module) {
        let Ok((tok, _)) = token else {
            return true;
        };
        let names_main = |t: &Option<Tok>| matches!(t, Some(Tok::Name { name }) if may_be_main(name));
        let found = match &tok {
            Tok::ColonEqual => names_main(&before[0]),
            Tok::Equal => {
                matches!(before[0], Some(Tok::Name { .. }))
                    && matches!(before[1], Some(Tok::Dot))
                    && names_main(&before[2])
            }
            Tok::Name { name } => BINDS_BY_NAME.contains(&name.as_str()),
            _ => false,
        };
        if found {
            return true;
        }
        before = [Some(tok), before[0].take(), before[1].take()];
    }
    false
}
