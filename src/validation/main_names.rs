//! How a script may name and bind `main`: names Python may normalise to `main`, and bindings
//! no statement shows.

use rustpython_parser::lexer::lex;
use rustpython_parser::{Mode, Tok};

/// `main`, or a name Python may normalise to `main`.
pub(super) fn may_be_main(name: &str) -> bool {
    name == "main" || (!name.is_ascii() && could_normalise_to_main(name))
}

/// Python NFKC-normalises identifiers; without Unicode tables here, a non-ASCII name of four
/// letters none of which is ASCII but `m`, `a`, `i`, `n` in order may be `main`.
fn could_normalise_to_main(name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    chars.len() == 4 && chars.iter().zip("main".chars()).all(|(&c, m)| c == m || !c.is_ascii())
}

const BINDS_BY_NAME: &[&str] = &["exec", "globals", "setattr", "vars"];

/// Whether the script may bind or change `main` in a way no statement shows: a walrus
/// (`main := ...`, in any expression), an attribute of it set (`main.__code__ = ...`), or the
/// builtins that bind names given as strings (`exec`, `globals`, `setattr`, `vars`). Then only
/// the running script can tell what `main` takes.
pub(super) fn bound_dynamically(script: &str) -> bool {
    // Most scripts have none of these words: no second pass of the lexer for them.
    let attribute_of_main = mentions(script, "main", |rest| {
        rest.trim_start_matches([' ', '\t']).starts_with('.')
    });
    let binds_by_name = BINDS_BY_NAME.iter().any(|name| mentions(script, name, |_| true));
    if !attribute_of_main && !binds_by_name && !script.contains(":=") && script.is_ascii() {
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

/// Whether `word` stands in `script` as a whole name (not inside `executor` or `variables`)
/// with `followed` true of what comes after it.
fn mentions(script: &str, word: &str, followed: impl Fn(&str) -> bool) -> bool {
    let part_of_a_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    script.match_indices(word).any(|(at, _)| {
        let rest = &script[at + word.len()..];
        !script[..at].ends_with(part_of_a_name) && !rest.starts_with(part_of_a_name) && followed(rest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_names_send_a_script_to_the_lexer() {
        assert!(!bound_dynamically(
            "def main(executor, variables):\n    return main_helper.x\n"
        ));
        assert!(mentions("main .f = 1", "main", |rest| rest
            .trim_start()
            .starts_with('.')));
        assert!(!mentions("domain.f = 1", "main", |_| true));
        assert!(!mentions("exec_plan = 1", "exec", |_| true));
        assert!(mentions("x = exec", "exec", |_| true));
    }
}
