//! An argument out of order in a call, placed as CPython 3.11 places it: a positional one
//! after keywords at the call's closing parenthesis (where its parser stood when it found it
//! out), and worded after what came before; `*args` after `**kwargs` at the first argument.

use rustpython_parser::lexer::lex;
use rustpython_parser::{Mode, Tok};

/// Which order rustpython found broken in the call holding byte `reported`.
pub(super) enum Misorder {
    PositionalAfterKeyword,
    IterableAfterKeywordUnpacking,
}

/// The message and byte offset CPython gives.
pub(super) fn detail(script: &str, reported: usize, misorder: Misorder) -> Option<(String, usize)> {
    // Each open bracket: where it opened, whether a parenthesis, where its first argument
    // starts, and whether a `**` argument is directly in it.
    let mut open: Vec<(usize, bool, Option<usize>, bool)> = Vec::new();
    let mut argument_starts = false;
    for token in lex(script, Mode::Module) {
        let (tok, range) = token.ok()?;
        let start = range.start().to_usize();
        let starts_next = matches!(tok, Tok::Lpar | Tok::Lsqb | Tok::Lbrace | Tok::Comma);
        if let Some((_, _, first @ None, _)) = open.last_mut() {
            *first = Some(start);
        }
        match tok {
            Tok::Lpar | Tok::Lsqb | Tok::Lbrace => open.push((start, tok == Tok::Lpar, None, false)),
            Tok::DoubleStar if argument_starts => {
                if let Some((_, true, _, unpacking)) = open.last_mut() {
                    *unpacking = true;
                }
            }
            Tok::Rpar | Tok::Rsqb | Tok::Rbrace => {
                let (opened, paren, first, unpacking) = open.pop()?;
                if paren && opened < reported && reported < start {
                    return Some(match misorder {
                        Misorder::PositionalAfterKeyword if unpacking => (
                            "positional argument follows keyword argument unpacking".to_string(),
                            start,
                        ),
                        Misorder::PositionalAfterKeyword => {
                            ("positional argument follows keyword argument".to_string(), start)
                        }
                        Misorder::IterableAfterKeywordUnpacking => (
                            "iterable argument unpacking follows keyword argument unpacking".to_string(),
                            first?,
                        ),
                    });
                }
            }
            _ => {}
        }
        argument_starts = starts_next;
    }
    None
}
