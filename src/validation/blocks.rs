//! Blocks as CPython words their errors: an indented block that never started (and the
//! compound statement it was due after), an unexpected indent, an unindent that matches no
//! outer level.

use super::position::line_column;
use rustpython_parser::lexer::lex;
use rustpython_parser::{Mode, Tok};

/// CPython's wording and column for an indentation error on `line`: an unexpected indent at
/// the indentation's width, an unindent past the line's end, and the block a missing indent
/// was expected after.
pub(super) fn indentation_detail(script: &str, message: &str, line: usize) -> Option<(String, usize)> {
    let text = script.split('\n').nth(line.checked_sub(1)?)?.trim_end_matches('\r');
    let indent = indent_of(text);
    match message {
        "unexpected indent" => Some((message.to_string(), indent.max(1))),
        "unindent does not match any outer indentation level" => Some((message.to_string(), text.chars().count() + 1)),
        "expected an indented block" => {
            let header = block_header(script, line);
            let message = match header {
                Some((what, header_line)) => format!("{message} after {what} on line {header_line}"),
                None => message.to_string(),
            };
            // A line dedented past the header is a DEDENT token to CPython, placed one column
            // earlier (0, shown as 1, at the margin).
            let header_indent = header
                .and_then(|(_, header_line)| script.split('\n').nth(header_line - 1))
                .map_or(0, indent_of);
            let column = if indent < header_indent {
                indent.max(1)
            } else {
                indent + 1
            };
            Some((message, column))
        }
        _ => None,
    }
}

/// How many characters of indentation a line starts with.
fn indent_of(text: &str) -> usize {
    text.chars().take_while(|c| matches!(c, ' ' | '\t' | '\x0c')).count()
}

/// The compound statement whose block should have started on `line`: the last logical line
/// before it that ends with its `:`, as CPython names it, and the line it starts on.
fn block_header(script: &str, line: usize) -> Option<(&'static str, usize)> {
    let mut header = None;
    let mut logical: Vec<(Tok, usize)> = Vec::new(); // the current logical line's tokens
    for token in lex(script, Mode::Module) {
        let (tok, range) = token.ok()?;
        let (row, _) = line_column(script, range.start().to_usize());
        match tok {
            Tok::Indent | Tok::Dedent => {}
            Tok::Newline => {
                if let [(first, first_row), .., (Tok::Colon, _)] = &logical[..] {
                    let second = logical.get(1).map(|(t, _)| t);
                    header = compound_statement(first, second).map(|what| (what, *first_row));
                }
                logical.clear();
            }
            _ if row >= line => break,
            tok => logical.push((tok, row)),
        }
    }
    header
}

/// A script ending in a compound statement's header (only blank or comment lines after it),
/// the parser having given up on the header's line or later: CPython's message, at the end of
/// the script's last line.
pub(super) fn block_never_started(script: &str, reported_line: usize) -> Option<(String, usize)> {
    let mut logical: Vec<(Tok, usize)> = Vec::new();
    let mut last_header = None;
    for token in lex(script, Mode::Module) {
        let (tok, range) = token.ok()?;
        match tok {
            Tok::Indent | Tok::Dedent => {}
            Tok::Newline => {
                last_header = match &logical[..] {
                    [(first, first_row), .., (Tok::Colon, _)] => {
                        compound_statement(first, logical.get(1).map(|(t, _)| t)).map(|what| (what, *first_row))
                    }
                    _ => None,
                };
                logical.clear();
            }
            tok => logical.push((tok, line_column(script, range.start().to_usize()).0)),
        }
    }
    let (what, header_line) = last_header.filter(|_| logical.is_empty())?;
    if reported_line < header_line {
        return None;
    }
    let body = script.strip_suffix('\n').unwrap_or(script);
    Some((
        format!("expected an indented block after {what} on line {header_line}"),
        body.trim_end_matches('\r').len(),
    ))
}

fn compound_statement(first: &Tok, second: Option<&Tok>) -> Option<&'static str> {
    Some(match (first, second) {
        (Tok::Def, _) | (Tok::Async, Some(Tok::Def)) => "function definition",
        (Tok::Class, _) => "class definition",
        (Tok::If, _) => "'if' statement",
        (Tok::Elif, _) => "'elif' statement",
        (Tok::Else, _) => "'else' statement",
        (Tok::For, _) | (Tok::Async, Some(Tok::For)) => "'for' statement",
        (Tok::While, _) => "'while' statement",
        (Tok::With, _) | (Tok::Async, Some(Tok::With)) => "'with' statement",
        (Tok::Try, _) => "'try' statement",
        (Tok::Except, Some(Tok::Star)) => "'except*' statement",
        (Tok::Except, _) => "'except' statement",
        (Tok::Finally, _) => "'finally' statement",
        (Tok::Match, _) => "'match' statement",
        (Tok::Case, _) => "'case' statement",
        _ => return None,
    })
}
