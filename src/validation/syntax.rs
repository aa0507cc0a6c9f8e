//! A script's syntax error as the API answers it: `syntax_error` with a 1-based line and
//! column, whichever pass found it.

use super::blocks::{block_never_started, indentation_detail};
use super::position::line_column;
use super::{calls, dicts, expected, fstring, handlers, number, python2, strings};
use crate::error::ApiError;
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
        // A script ending in a line continuation ends there too: a bracket still open is
        // what CPython names then, else the continuation.
        let continued = continued_past_the_end(script, &err.error);
        let at_end = continued.is_some()
            || matches!(
                err.error,
                ParseErrorType::Eof | ParseErrorType::Lexical(LexicalErrorType::Eof)
            );
        let cause = lexical_cause(script, err.offset.to_usize(), at_end)
            .or(continued)
            .or_else(|| match &err.error {
                ParseErrorType::UnrecognizedToken(..) => parser_hint(script, err.offset.to_usize()),
                _ => None,
            });
        let cause = cause.or_else(|| match &err.error {
            ParseErrorType::UnrecognizedToken(..) | ParseErrorType::Eof => {
                handlers::missing_handler(script, err.offset.to_usize())
            }
            _ => None,
        });
        let cause = cause.or_else(|| match &err.error {
            ParseErrorType::Lexical(LexicalErrorType::FStringError(kind)) => {
                fstring::detail(script, err.offset.to_usize(), kind)
            }
            ParseErrorType::Lexical(LexicalErrorType::OtherError(message))
                if message.starts_with("cannot mix bytes") || message.starts_with("bytes can only contain") =>
            {
                strings::after_strings(script, err.offset.to_usize()).map(|after| (message.clone(), after))
            }
            ParseErrorType::Lexical(LexicalErrorType::UnicodeError | LexicalErrorType::StringError) => {
                strings::escape_error(script, err.offset.to_usize())
            }
            ParseErrorType::Lexical(LexicalErrorType::PositionalArgumentError) => {
                calls::detail(script, err.offset.to_usize(), calls::Misorder::PositionalAfterKeyword)
            }
            ParseErrorType::Lexical(LexicalErrorType::UnpackedArgumentError) => calls::detail(
                script,
                err.offset.to_usize(),
                calls::Misorder::IterableAfterKeywordUnpacking,
            ),
            ParseErrorType::Lexical(LexicalErrorType::UnrecognizedToken { tok }) => {
                let at = char_at(script, err.offset.to_usize().min(script.len()), *tok);
                Some(("invalid syntax".to_string(), at))
            }
            _ => None,
        });
        if let Some((message, offset)) = cause {
            let (line, column) = line_column(script, offset);
            return syntax_error(&message, line, column);
        }
    }
    let location = RandomLocator::new(script).locate(err.offset);
    let line = location.row.get() as usize;
    if let Some((message, offset)) = block_never_started(script, line) {
        let (line, column) = line_column(script, offset);
        return syntax_error(&message, line, column);
    }
    let (message, column) = indentation_detail(script, &err.error.to_string(), line)
        .unwrap_or_else(|| (err.error.to_string(), location.column.get() as usize));
    syntax_error(&message, line, column)
}

/// A script that ends in a line continuation (a backslash, then at most a line break):
/// CPython's tokenizer meets the end of the file there, and says so just past the backslash.
fn continued_past_the_end(script: &str, error: &ParseErrorType) -> Option<(String, usize)> {
    let at_the_end = matches!(
        error,
        ParseErrorType::Eof | ParseErrorType::Lexical(LexicalErrorType::Eof | LexicalErrorType::LineContinuationError)
    );
    let body = script.strip_suffix('\n').unwrap_or(script);
    let backslash = body.strip_suffix('\\')?.len();
    // A comment may end in a backslash too: left to the other checks.
    let last_line = &body[body.rfind('\n').map_or(0, |i| i + 1)..];
    (at_the_end && !last_line.contains('#')).then(|| ("unexpected EOF while parsing".to_string(), backslash + 1))
}

/// `yield x = 1` (a statement that starts with `yield`, on a line of its own or after `;` or
/// a block's `:`, then `=` outside brackets): CPython points at the `yield`.
fn assigned_yield(line: &[(Tok, usize)], unexpected: &Tok) -> Option<(String, usize)> {
    let (mut depth, mut lambdas, mut start) = (0i32, 0, 0);
    for (i, (tok, _)) in line.iter().enumerate() {
        match tok {
            Tok::Lpar | Tok::Lsqb | Tok::Lbrace => depth += 1,
            Tok::Rpar | Tok::Rsqb | Tok::Rbrace => depth -= 1,
            Tok::Lambda if depth == 0 => lambdas += 1,
            Tok::Colon if depth == 0 && lambdas > 0 => lambdas -= 1,
            Tok::Semi | Tok::Colon if depth == 0 => start = i + 1,
            _ => {}
        }
    }
    match &line[start..] {
        [(Tok::Yield, at), ..] if *unexpected == Tok::Equal && depth == 0 => {
            Some(("assignment to yield expression not possible".to_string(), *at))
        }
        _ => None,
    }
}

/// How many tokens after the unexpected one are read for the forms that need them.
const MAX_REST_TOKENS: usize = 256;

/// CPython's hints for common mistakes where its parser gives them: a missing colon or
/// `else` (`expected`), Python 2's `print x`, two expressions in brackets without a comma
/// between them, and `=` for `==` in a condition. The message and the byte offset CPython reports.
fn parser_hint(script: &str, offset: usize) -> Option<(String, usize)> {
    let mut line: Vec<(Tok, usize)> = Vec::new(); // the logical line's tokens before the error
    let mut unexpected = None;
    let mut last_end = 0;
    let mut tokens = lex(script, Mode::Module);
    for token in tokens.by_ref() {
        let (tok, range) = token.ok()?;
        let start = range.start().to_usize();
        if start >= offset {
            unexpected = Some((tok, start));
            break;
        }
        last_end = range.end().to_usize();
        match tok {
            Tok::Newline => line.clear(),
            Tok::Indent | Tok::Dedent => {}
            tok => line.push((tok, start)),
        }
    }
    let (unexpected, unexpected_at) = unexpected?;
    // The rest of the logical line, for the forms CPython recognises by what follows.
    let rest: Vec<(Tok, usize)> = tokens
        .map_while(Result::ok)
        .take_while(|(tok, _)| *tok != Tok::Newline)
        .take(MAX_REST_TOKENS)
        .map(|(tok, range)| (tok, range.start().to_usize()))
        .collect();
    let gap = script.get(last_end..unexpected_at).unwrap_or("");
    let hint = dicts::detail(script, &line, &unexpected, unexpected_at)
        .or_else(|| expected::detail(&line, &unexpected, unexpected_at, gap))
        .or_else(|| python2::detail(&line, &unexpected, unexpected_at, &rest))
        .or_else(|| assigned_yield(&line, &unexpected));
    if hint.is_some() {
        return hint;
    }
    let (previous, previous_at) = line.last()?;
    let starts_expression = matches!(
        unexpected,
        Tok::Name { .. }
            | Tok::Int { .. }
            | Tok::Float { .. }
            | Tok::Complex { .. }
            | Tok::String { .. }
            | Tok::Lbrace
            | Tok::Ellipsis
            | Tok::None
            | Tok::True
            | Tok::False
    );
    if let Tok::Name { name } = previous {
        if (name == "print" || name == "exec") && starts_expression {
            let message = format!("Missing parentheses in call to '{name}'. Did you mean {name}(...)?");
            return Some((message, *previous_at));
        }
    }
    let depth = line.iter().fold(0i32, |depth, (tok, _)| match tok {
        Tok::Lpar | Tok::Lsqb | Tok::Lbrace => depth + 1,
        Tok::Rpar | Tok::Rsqb | Tok::Rbrace => depth - 1,
        _ => depth,
    });
    let ends_expression = expected::ends_an_expression(previous);
    let prefix_typo = matches!((previous, &unexpected), (Tok::Name { .. }, Tok::String { .. }));
    // Names in an import's brackets or a def's parameters are not expressions.
    let not_expressions = matches!(line.first(), Some((Tok::Import | Tok::From | Tok::Def | Tok::Async, _)));
    if depth > 0 && ends_expression && starts_expression && !prefix_typo && !not_expressions {
        let start = expression_start(&line)?;
        // Nor is a soft keyword's start (`match`, `case`, `type`): CPython gives no hint then.
        let soft_keyword = match &line[start].0 {
            Tok::Name { name } => ["match", "case", "type", "_"].contains(&name.as_str()),
            tok => matches!(tok, Tok::Match | Tok::Case | Tok::Type),
        };
        if !soft_keyword {
            return Some(("invalid syntax. Perhaps you forgot a comma?".to_string(), line[start].1));
        }
    }
    // `if x = 1:`, also in brackets: a plain name before the `=` (CPython words other
    // targets differently).
    let condition = matches!(line.first(), Some((Tok::If | Tok::Elif | Tok::While, _)));
    let start = expression_start(&line).unwrap_or(line.len());
    if condition && unexpected == Tok::Equal && start + 1 == line.len() && matches!(previous, Tok::Name { .. }) {
        let message = "invalid syntax. Maybe you meant '==' or ':=' instead of '='?";
        return Some((message.to_string(), *previous_at));
    }
    None
}

/// The index of the token where the expression that ends `tokens` starts: after the last
/// comma, colon, `=`, open bracket or `if`/`elif`/`while` at its own bracket depth. None in a
/// comprehension, a conditional expression or a lambda, where CPython gives no hint.
fn expression_start(tokens: &[(Tok, usize)]) -> Option<usize> {
    let mut nested = 0;
    for (i, (tok, _)) in tokens.iter().enumerate().rev() {
        match tok {
            Tok::Rpar | Tok::Rsqb | Tok::Rbrace => nested += 1,
            Tok::Lpar | Tok::Lsqb | Tok::Lbrace if nested > 0 => nested -= 1,
            Tok::Lpar | Tok::Lsqb | Tok::Lbrace | Tok::Comma | Tok::Colon | Tok::Equal | Tok::ColonEqual
                if nested == 0 =>
            {
                return Some(i + 1).filter(|&start| start < tokens.len());
            }
            Tok::If | Tok::Elif | Tok::While if nested == 0 && i == 0 => return Some(1).filter(|&s| s < tokens.len()),
            Tok::For | Tok::Async | Tok::If | Tok::Else | Tok::Lambda if nested == 0 => return None,
            _ => {}
        }
    }
    Some(0)
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
                        return unterminated_string(script, last_end).or_else(|| number_after(script, last_end))
                    }
                    // The end of the file inside a string, or inside brackets (below).
                    LexicalErrorType::Eof => {
                        if let Some(cause) = unterminated_string(script, last_end) {
                            return Some(cause);
                        }
                        break;
                    }
                    // The script's last line continued past its end (`continued_past_the_end`).
                    LexicalErrorType::LineContinuationError if at_end => break,
                    // A character no token starts with: CPython's tokenizer refuses one past
                    // ASCII or a control character; a printable one in ASCII (`$`, `?`) is the
                    // parser's to refuse.
                    LexicalErrorType::UnrecognizedToken { tok } if !tok.is_ascii() || tok.is_ascii_control() => {
                        return Some((invalid_character(tok), char_at(script, at, tok)));
                    }
                    _ => return None,
                }
            }
        };
        let (start, end) = (range.start().to_usize(), range.end().to_usize());
        last_end = end;
        // rustpython reads `12abc` as two tokens, and takes `a😀` for a name; CPython's
        // tokenizer refuses both, wherever they are.
        if matches!(tok, Tok::Int { .. } | Tok::Float { .. } | Tok::Complex { .. }) {
            if let Some(cause) = number::literal_error(script, start) {
                return Some(cause);
            }
        }
        if let Tok::Name { name } = &tok {
            if let Some((i, c)) = name.char_indices().find(|&(_, c)| is_symbol(c)) {
                return Some((invalid_character(c), start + i));
            }
        }
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

/// CPython's words for a character past ASCII that starts no token.
fn invalid_character(c: char) -> String {
    const FORMAT: [std::ops::RangeInclusive<char>; 4] = [
        '\u{200b}'..='\u{200f}',
        '\u{2028}'..='\u{202e}',
        '\u{2060}'..='\u{2064}',
        '\u{feff}'..='\u{feff}',
    ];
    if c.is_whitespace() || c.is_control() || FORMAT.iter().any(|r| r.contains(&c)) {
        format!("invalid non-printable character U+{:04X}", c as u32)
    } else {
        format!("invalid character '{c}' (U+{:04X})", c as u32)
    }
}

/// A symbol rustpython lets into a name and CPython does not (emoji, arrows, math, `×`, `°`):
/// past ASCII, neither a letter nor a digit, in the blocks of symbols and punctuation.
fn is_symbol(c: char) -> bool {
    const SYMBOLS: [std::ops::RangeInclusive<char>; 4] = [
        '\u{a0}'..='\u{ff}',
        '\u{2000}'..='\u{2bff}',
        '\u{3000}'..='\u{303f}',
        '\u{1f000}'..='\u{1faff}',
    ];
    !c.is_alphanumeric() && SYMBOLS.iter().any(|r| r.contains(&c))
}

/// The byte offset of `c` where rustpython reported it: at `at`, or just before.
fn char_at(script: &str, at: usize, c: char) -> usize {
    match script.get(..at) {
        Some(before) if !script[at..].starts_with(c) && before.ends_with(c) => at - c.len_utf8(),
        _ => at,
    }
}

fn closing(opening: char) -> char {
    match opening {
        '(' => ')',
        '[' => ']',
        _ => '}',
    }
}

/// The number literal starting after the last whole token, if CPython refuses it.
fn number_after(script: &str, last_end: usize) -> Option<(String, usize)> {
    let rest = &script[last_end..];
    let begin = last_end + (rest.len() - rest.trim_start().len());
    let mut chars = script[begin..].chars();
    let first = chars.next()?;
    (first.is_ascii_digit() || (first == '.' && chars.next()?.is_ascii_digit()))
        .then(|| number::literal_error(script, begin))
        .flatten()
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
    ApiError::syntax_error(error_class(message), message, line as u64, column as u64)
}

/// The class CPython raises with this message: indentation errors are its own.
fn error_class(message: &str) -> &'static str {
    const INDENTATION: [&str; 3] = [
        "unexpected indent",
        "unindent does not match",
        "expected an indented block",
    ];
    if message.starts_with("inconsistent use of tabs") {
        "TabError"
    } else if INDENTATION.iter().any(|start| message.starts_with(start)) {
        "IndentationError"
    } else {
        "SyntaxError"
    }
}
