//! CPython 3.11's messages for a dictionary display with a key but no value after it:
//! `{'a': 1, 'b'}` ("':' expected after dictionary key", at the key's last character) and
//! `{'a':}` ("expression expected after dictionary key and ':'", at the colon). rustpython
//! only names the token after them, one column past where CPython points.

use super::expected::{innermost_open, outside_brackets};
use rustpython_parser::lexer::lex;
use rustpython_parser::{ast, Mode, Parse, Tok};

/// A key of more tokens than this is not searched for its longest expression (each try is a
/// parse of the key so far).
const MAX_KEY_TOKENS: usize = 64;

/// CPython's message and byte offset, given the logical line's tokens before the one the
/// parser did not expect, that token and its offset.
pub(super) fn detail(script: &str, line: &[(Tok, usize)], unexpected: &Tok, at: usize) -> Option<(String, usize)> {
    // A `case` line's braces are a mapping pattern, not a display.
    if matches!(line.first(), Some((Tok::Case, _))) {
        return None;
    }
    let open = innermost_open(line).filter(|&i| line[i].0 == Tok::Lbrace)?;
    let items = top_level_items(&line[open + 1..]);
    let (last, before) = items.split_last()?;
    // A display that is a dict so far: every item before the last is `key: value` or `**d`.
    if last.is_empty() || !before.iter().all(|item| is_pair(item)) || starts_with_star(last) {
        return None;
    }
    match pair_colon(last) {
        // `key:` and then the display goes on or ends: no value.
        Some(colon) if colon + 1 == last.len() && colon > 0 && matches!(unexpected, Tok::Comma | Tok::Rbrace) => {
            Some((
                "expression expected after dictionary key and ':'".to_string(),
                last[colon].1,
            ))
        }
        Some(_) => None,
        // A key without its colon, after at least one pair: CPython's key is the longest
        // expression the item starts with.
        None if !before.is_empty() => {
            let end = longest_expression(script, last[0].1, at, last.len())?;
            let last_char = script.get(..end)?.char_indices().next_back()?.0;
            Some(("':' expected after dictionary key".to_string(), last_char))
        }
        None => None,
    }
}

/// `tokens` split at the commas outside any bracket in them.
fn top_level_items(tokens: &[(Tok, usize)]) -> Vec<&[(Tok, usize)]> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, (tok, _)) in tokens.iter().enumerate() {
        match tok {
            Tok::Lpar | Tok::Lsqb | Tok::Lbrace => depth += 1,
            Tok::Rpar | Tok::Rsqb | Tok::Rbrace => depth = depth.saturating_sub(1),
            Tok::Comma if depth == 0 => {
                items.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&tokens[start..]);
    items
}

/// The index of an item's `key: value` colon: the first outside brackets, unless a lambda's
/// or a comprehension comes first.
fn pair_colon(item: &[(Tok, usize)]) -> Option<usize> {
    let mut depth = 0usize;
    for (i, (tok, _)) in item.iter().enumerate() {
        match tok {
            Tok::Lpar | Tok::Lsqb | Tok::Lbrace => depth += 1,
            Tok::Rpar | Tok::Rsqb | Tok::Rbrace => depth = depth.saturating_sub(1),
            Tok::Lambda | Tok::For | Tok::Async if depth == 0 => return None,
            Tok::Colon if depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

/// A whole `key: value` (no comprehension after it; one inside brackets is part of the value)
/// or a `**mapping`.
fn is_pair(item: &[(Tok, usize)]) -> bool {
    let comprehension = outside_brackets(item)
        .iter()
        .any(|(tok, _)| matches!(tok, Tok::For | Tok::Async));
    match item.first() {
        Some((Tok::DoubleStar, _)) => item.len() > 1 && !comprehension,
        Some(_) => pair_colon(item).is_some_and(|colon| colon > 0 && colon + 1 < item.len()) && !comprehension,
        None => false,
    }
}

fn starts_with_star(item: &[(Tok, usize)]) -> bool {
    matches!(item.first(), Some((Tok::Star | Tok::DoubleStar, _)))
}

/// Where the longest expression in `script[start..at]` that starts at `start` ends (a byte
/// offset), trying the item's token ends from the last.
fn longest_expression(script: &str, start: usize, at: usize, tokens: usize) -> Option<usize> {
    if tokens > MAX_KEY_TOKENS {
        return None;
    }
    let item = script.get(start..at)?;
    // In brackets, so that the item may span lines as it did in the display.
    let ends: Vec<usize> = lex(&format!("({item}\n)"), Mode::Expression)
        .map_while(Result::ok)
        .map(|(_, range)| range.end().to_usize())
        .filter(|&end| end > 1 && end <= item.len() + 1)
        .map(|end| end - 1)
        .collect();
    // Where the expression's node ends, as CPython places it: `(3)` ends at the `3`.
    ends.into_iter().rev().find_map(|end| {
        let expression = ast::Expr::parse(&format!("({}\n)", &item[..end]), "<key>").ok()?;
        Some(start + ast::Ranged::end(&expression).to_usize().checked_sub(1)?)
    })
}

#[cfg(test)]
mod tests {
    use crate::validation::validate;

    /// The API's message for `script`'s syntax error.
    fn message_of(script: &str) -> String {
        validate(script).expect_err(script).message
    }

    #[test]
    fn a_key_without_its_value_is_named_where_cpython_names_it() {
        // (script, message, line, column), each as CPython 3.11 gives it.
        let cases = [
            ("x = {'a': 1, 'b'}\n", "':' expected after dictionary key", 1, 16),
            ("x = {1: 2, 3, 4: 5}\n", "':' expected after dictionary key", 1, 12),
            ("x = {**a, 'c'}\n", "':' expected after dictionary key", 1, 13),
            ("x = {1: 2, 'é'}\n", "':' expected after dictionary key", 1, 14),
            ("x = {1: 2, (3)}\n", "':' expected after dictionary key", 1, 13),
            ("x = {1: 2, 3 +}\n", "':' expected after dictionary key", 1, 12),
            ("x = {1: 2,\n  3  # c\n}\n", "':' expected after dictionary key", 2, 3),
            ("x = {1: 2, x for x in y}\n", "':' expected after dictionary key", 1, 12),
            ("x = {1: 2, lambda: 3}\n", "':' expected after dictionary key", 1, 20),
            ("x = {1: 2, 'a' if b}\n", "':' expected after dictionary key", 1, 14),
            ("x = {1:2, 3 4}\n", "':' expected after dictionary key", 1, 11),
            (
                "x = {1: [a for a in b], 2}\n",
                "':' expected after dictionary key",
                1,
                25,
            ),
            ("x = {'a':}\n", "expression expected after dictionary key and ':'", 1, 9),
            (
                "x = {'a':, 'b': 2}\n",
                "expression expected after dictionary key and ':'",
                1,
                9,
            ),
            (
                "x = {1: 2, 3:}\n",
                "expression expected after dictionary key and ':'",
                1,
                13,
            ),
        ];
        for (script, message, line, column) in cases {
            let expected = format!("SyntaxError: {message} (line {line}, column {column})");
            assert_eq!(message_of(script), expected, "{script:?}");
        }
    }

    #[test]
    fn sets_patterns_and_values_keep_their_own_errors() {
        // A mapping pattern is no display.
        let pattern = message_of("match v:\n    case {'k': }:\n        pass\n");
        assert!(pattern.starts_with("SyntaxError: invalid syntax"), "{pattern}");
        assert!(pattern.ends_with("(line 2, column 16)"), "{pattern}");
        // Nor is a set; a value missing its `else` is the conditional's error.
        let cases = [
            (
                "x = {1, 2 3}\n",
                "SyntaxError: invalid syntax. Perhaps you forgot a comma?",
                1,
                9,
            ),
            (
                "x = {1: 'a' if b}\n",
                "SyntaxError: expected 'else' after 'if' expression",
                1,
                9,
            ),
        ];
        for (script, message, line, column) in cases {
            let expected = format!("{message} (line {line}, column {column})");
            assert_eq!(message_of(script), expected, "{script:?}");
        }
    }
}
