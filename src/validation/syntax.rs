//! A script's syntax error as the API answers it: `syntax_error` with a 1-based line and
//! column, whichever pass found it.

use crate::error::{ApiError, ErrorKind};
use rustpython_parser::source_code::RandomLocator;

/// rustpython's parse error as the API's syntax error.
pub(super) fn parse_error(script: &str, err: &rustpython_parser::ParseError) -> ApiError {
    let location = RandomLocator::new(script).locate(err.offset);
    syntax_error(
        &err.error.to_string(),
        location.row.get() as usize,
        location.column.get() as usize,
    )
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
