//! Indentation that mixes tabs and spaces, which rustpython refuses outright and CPython
//! accepts when it is consistent. CPython measures each logical line's indentation twice, with
//! tabs to the next multiple of 8 and with tabs as 1 column, and raises TabError when the two
//! measures disagree about the block structure. We do the same, then parse the script with
//! its indentation expanded to spaces (only the validator sees that copy).

use super::syntax::{parse_error, syntax_error};
use crate::error::ApiError;
use rustpython_parser::ast::{self, Suite};
use rustpython_parser::lexer::lex;
use rustpython_parser::{Mode, Parse, Tok};

const TAB_SIZE: usize = 8;

/// Leading whitespace measured as CPython's tokenizer does: `(col, altcol)`, and its length
/// in bytes. A form feed resets both measures.
fn measure(line: &str) -> (usize, usize, usize) {
    let (mut col, mut altcol) = (0, 0);
    for (i, b) in line.bytes().enumerate() {
        match b {
            b' ' => {
                col += 1;
                altcol += 1;
            }
            b'\t' => {
                col = (col / TAB_SIZE + 1) * TAB_SIZE;
                altcol += 1;
            }
            b'\x0c' => {
                col = 0;
                altcol = 0;
            }
            _ => return (col, altcol, i),
        }
    }
    (col, altcol, line.len())
}

/// The script with every line's leading whitespace replaced by `col` spaces.
fn expand(script: &str) -> String {
    let mut out = String::with_capacity(script.len() + 64);
    for line in script.split_inclusive('\n') {
        let (col, _, prefix) = measure(line);
        if line.as_bytes()[..prefix].iter().all(|&b| b == b' ') {
            out.push_str(line);
        } else {
            out.extend(std::iter::repeat(' ').take(col));
            out.push_str(&line[prefix..]);
        }
    }
    out
}

pub(super) fn parse_with_tabs(script: &str) -> Result<Suite, ApiError> {
    let expanded = expand(script);
    let tab_error = check_consistency(script, &expanded).err();
    match ast::Suite::parse(&expanded, "<script>") {
        Ok(suite) => tab_error.map_or(Ok(suite), Err),
        Err(err) => {
            // CPython's tokenizer raises the TabError as the parser reaches its line: first,
            // unless the parser failed on an earlier line (an expanded block that looks empty
            // is not one: `\tif 1:` then 8 spaces).
            let error = parse_error(&expanded, &err);
            match tab_error {
                Some(tab) if tab.fields["line"].as_u64() <= error.fields["line"].as_u64() => Err(tab),
                _ => Err(error),
            }
        }
    }
}

/// CPython's indentation stack, over the lines where a logical line starts.
fn check_consistency(script: &str, expanded: &str) -> Result<(), ApiError> {
    let lines: Vec<&str> = script.split_inclusive('\n').collect();
    let mut line_starts = Vec::with_capacity(lines.len());
    let mut offset = 0;
    for line in expanded.split_inclusive('\n') {
        line_starts.push(offset);
        offset += line.len();
    }
    let mut stack: Vec<(usize, usize)> = vec![(0, 0)];
    let mut at_line_start = true;
    for token in lex(expanded, Mode::Module) {
        let Ok((tok, range)) = token else {
            // The parse above succeeded, so the lexer does too; nothing more to check.
            return Ok(());
        };
        match tok {
            Tok::Newline => at_line_start = true,
            Tok::Indent | Tok::Dedent => {}
            _ if at_line_start => {
                at_line_start = false;
                let start = usize::from(range.start());
                let row = line_starts.partition_point(|&s| s <= start).saturating_sub(1);
                let Some(line) = lines.get(row) else { return Ok(()) };
                let (col, altcol, _) = measure(line);
                if !consistent(&mut stack, col, altcol) {
                    return Err(syntax_error(
                        "inconsistent use of tabs and spaces in indentation",
                        row + 1,
                        1,
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn consistent(stack: &mut Vec<(usize, usize)>, col: usize, altcol: usize) -> bool {
    let &(top_col, top_alt) = stack.last().unwrap_or(&(0, 0));
    if col == top_col {
        altcol == top_alt
    } else if col > top_col {
        stack.push((col, altcol));
        altcol > top_alt
    } else {
        while stack.len() > 1 && stack.last().is_some_and(|&(c, _)| c > col) {
            stack.pop();
        }
        stack.last().is_some_and(|&(c, a)| c == col && a == altcol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_like_cpython() {
        assert_eq!(measure("    x"), (4, 4, 4));
        assert_eq!(measure("\tx"), (8, 1, 1));
        assert_eq!(measure("  \tx"), (8, 3, 3));
        assert_eq!(measure("\t  x"), (10, 3, 3));
    }

    #[test]
    fn consistent_mixtures_parse() {
        assert!(parse_with_tabs("def main():\n  \treturn 1\n").is_ok());
        assert!(parse_with_tabs("def main():\n  \tif 1:\n  \t\treturn 1\n  \treturn 2\n").is_ok());
    }

    #[test]
    fn inconsistent_mixtures_are_tab_errors() {
        // 8 spaces and one tab reach column 8 by one measure and differ by the other.
        let err = parse_with_tabs("def main():\n        x = 1\n\treturn x\n").unwrap_err();
        assert_eq!(err.fields["line"], 3);
        // Expanded, the block under `if` looks empty; CPython's tokenizer stops first.
        let err = parse_with_tabs("def main():\n\tif 1:\n        return 1\n").unwrap_err();
        assert_eq!(
            (err.fields["line"].as_u64(), err.fields["column"].as_u64()),
            (Some(3), Some(1))
        );
        assert!(
            err.message.starts_with("TabError: inconsistent use of tabs"),
            "{}",
            err.message
        );
        // A syntax error on an earlier line is reported first, as CPython's parser stops there.
        let err = parse_with_tabs("def main():\n\tx = = 1\n        return 1\n").unwrap_err();
        assert_eq!(err.fields["line"], 2);
    }
}
