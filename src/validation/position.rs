//! Where an offset is, as the API reports it.

/// 1-based line and character column of a byte offset.
pub(super) fn line_column(script: &str, offset: usize) -> (usize, usize) {
    let before = &script[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}
