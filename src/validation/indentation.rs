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
            let error = at_original_column(parse_error(&expanded, &err), script, &expanded);
            match tab_error {
                Some(tab) if tab.fields["line"].as_u64() <= error.fields["line"].as_u64() => Err(tab),
                _ => Err(error),
            }
        }
    }
}

/// The error with its column in the script as sent: positions are found in the copy whose
/// indentation is expanded to spaces, which is longer where the script's has tabs.
fn at_original_column(error: ApiError, script: &str, expanded: &str) -> ApiError {
    let (Some(line), Some(column)) = (error.fields["line"].as_u64(), error.fields["column"].as_u64()) else {
        return error;
    };
    let row = (line as usize).saturating_sub(1);
    let (Some(original), Some(copy)) = (
        script.split_inclusive('\n').nth(row),
        expanded.split_inclusive('\n').nth(row),
    ) else {
        return error;
    };
    let (_, _, indent) = measure(original);
    let copied_indent = copy.len() - copy.trim_start_matches(' ').len();
    let position = format!(" (line {line}, column {column})");
    let (Some((class, message)), true) = (
        error.message.strip_suffix(&position).and_then(|m| m.split_once(": ")),
        indent != copied_indent,
    ) else {
        return error;
    };
    let column = if column as usize > copied_indent {
        column - copied_indent as u64 + indent as u64
    } else {
        column.min(indent as u64 + 1)
    };
    ApiError::syntax_error(class, message, line, column)
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
                let mut row = line_starts.partition_point(|&s| s <= start).saturating_sub(1);
                // A logical line starts where its first physical line does: lines of nothing but
                // a backslash before its first token are part of it.
                while row > 0 && lines[row - 1].trim_end_matches(['\n', '\r']).ends_with('\\') {
                    row -= 1;
                }
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
    fn columns_are_the_scripts_own_not_the_expanded_copys() {
        // A space and a tab: 8 columns in the copy the parser sees, 2 characters in the script.
        let err = parse_with_tabs("if 1:\n \tx = = 1\n").unwrap_err();
        assert_eq!(
            (err.fields["line"].as_u64(), err.fields["column"].as_u64()),
            (Some(2), Some(7))
        );
        assert!(err.message.ends_with("(line 2, column 7)"), "{}", err.message);
        let err = parse_with_tabs("if 1:\n \ttry:\n \t\tx\n \ty\n").unwrap_err();
        assert_eq!(
            err.message,
            "SyntaxError: expected 'except' or 'finally' block (line 4, column 3)"
        );
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
        // A logical line measured from its first physical line, a lone backslash's (CPython
        // accepts this).
        assert!(parse_with_tabs("def f():\n \\\n   if e:\n\t if e:\n          a\n").is_ok());
        // A syntax error on an earlier line is reported first, as CPython's parser stops there.
        let err = parse_with_tabs("def main():\n\tx = = 1\n        return 1\n").unwrap_err();
        assert_eq!(err.fields["line"], 2);
    }
}
