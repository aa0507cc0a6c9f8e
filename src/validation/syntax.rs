//! A script's syntax error as the API answers it: `syntax_error` with a 1-based line and
//! column, whichever pass found it.

use crate::error::{ApiError, ErrorKind};
use rustpython_parser::lexer::{lex, LexicalErrorType};
use rustpython_parser::source_code::RandomLocator;
use rustpython_parser::{Mode, ParseErrorType, Tok};

/// rustpython's parse error as the API's syntax error; where CPython names the real cause
/// (an unterminated string, a bracket never closed or closing the wrong one), that instead.
pub(super) fn parse_error(script: &str, err: &rustpython_parser::ParseError) -> ApiError {
    let generic = !matches!(
        err.error,
        ParseErrorType::Lexical(
            LexicalErrorType::IndentationError | LexicalErrorType::TabError | LexicalErrorType::TabsAfterSpaces
        )
    );
    if generic {
        let at_end = matches!(
            err.error,
            ParseErrorType::Eof | ParseErrorType::Lexical(LexicalErrorType::Eof)
        );
        if let Some((message, offset)) = lexical_cause(script, err.offset.to_usize(), at_end) {
            let (line, column) = line_column(script, offset);
            return syntax_error(&message, line, column);
        }
    }
    let location = RandomLocator::new(script).locate(err.offset);
    syntax_error(
        &err.error.to_string(),
        location.row.get() as usize,
        location.column.get() as usize,
    )
}

/// What CPython's tokenizer finds when the parser gives up (it reads the whole source then):
/// a string that never ends or a closing bracket without its opening one, anywhere; else a
/// bracket still open at the end (`at_end`: the parser ran out of source). The message and
/// the byte offset CPython reports.
fn lexical_cause(script: &str, reported: usize, at_end: bool) -> Option<(String, usize)> {
    let mut open: Vec<(char, usize)> = Vec::new();
    let mut last_end = 0;
    for token in lex(script, Mode::Module) {
        let (tok, range) = match token {
            Ok(token) => token,
            Err(err) => {
                let at = err.location.to_usize().min(script.len());
                match err.error {
                    // Reported just past the bracket.
                    LexicalErrorType::NestingError => {
                        let close = script.get(..at).and_then(|s| s.chars().next_back()).unwrap_or(')');
                        return Some((format!("unmatched '{close}'"), at - close.len_utf8()));
                    }
                    LexicalErrorType::OtherError(_) | LexicalErrorType::StringError => {
                        return unterminated_string(script, last_end)
                    }
                    // The end of the file inside a string, or inside brackets (below).
                    LexicalErrorType::Eof => {
                        if let Some(cause) = unterminated_string(script, last_end) {
                            return Some(cause);
                        }
                        break;
                    }
                    _ => return None,
                }
            }
        };
        let (start, end) = (range.start().to_usize(), range.end().to_usize());
        last_end = end;
        let close = match tok {
            Tok::Lpar | Tok::Lsqb | Tok::Lbrace => {
                open.push((script[start..].chars().next().unwrap_or('('), start));
                continue;
            }
            Tok::Rpar => ')',
            Tok::Rsqb => ']',
            Tok::Rbrace => '}',
            _ => continue,
        };
        match open.pop() {
            None => return Some((format!("unmatched '{close}'"), start)),
            Some((opening, opened_at)) if closing(opening) != close => {
                let mut message =
                    format!("closing parenthesis '{close}' does not match opening parenthesis '{opening}'");
                let (open_line, _) = line_column(script, opened_at);
                if open_line != line_column(script, start).0 {
                    message.push_str(&format!(" on line {open_line}"));
                }
                return Some((message, start));
            }
            Some(_) => {}
        }
    }
    // CPython blames the innermost bracket still open at the end when the parser ran out of
    // source, or gave up on a later line than the bracket opened.
    let &(opening, opened_at) = open.last()?;
    let reported_line = line_column(script, reported.min(script.len())).0;
    (at_end || reported_line > line_column(script, opened_at).0)
        .then(|| (format!("'{opening}' was never closed"), opened_at))
}

fn closing(opening: char) -> char {
    match opening {
        '(' => ')',
        '[' => ']',
        _ => '}',
    }
}

/// The string literal that starts after the last whole token, if it is one: CPython's
/// message, and where the string (its prefix included) begins.
fn unterminated_string(script: &str, last_end: usize) -> Option<(String, usize)> {
    let rest = &script[last_end..];
    let begin = last_end + (rest.len() - rest.trim_start().len());
    let quotes = script[begin..].trim_start_matches(|c: char| c.is_ascii_alphabetic());
    if quotes.starts_with("'''") || quotes.starts_with("\"\"\"") {
        // The line the file ends on (a final newline ends a line, it does not start one).
        let last_line = script.matches('\n').count() + usize::from(!script.ends_with('\n'));
        Some((
            format!("unterminated triple-quoted string literal (detected at line {last_line})"),
            begin,
        ))
    } else if quotes.starts_with('\'') || quotes.starts_with('"') {
        let (line, _) = line_column(script, begin);
        Some((format!("unterminated string literal (detected at line {line})"), begin))
    } else {
        None
    }
}

/// A syntax error at a 1-based line and character column.
pub(super) fn syntax_error(message: &str, line: usize, column: usize) -> ApiError {
    ApiError::new(
        ErrorKind::SyntaxError,
        format!("SyntaxError: {message} (line {line}, column {column})"),
    )
    .with("line", line)
    .with("column", column)
}

/// 1-based line and character column of a byte offset.
pub(super) fn line_column(script: &str, offset: usize) -> (usize, usize) {
    let before = &script[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}
