//! Just enough of a shell lexer (POSIX sh, plus bash arrays for mkinitcpio.conf) to find
//! the assignments of one variable in a configuration fragment and the bytes of their
//! values. It follows quotes, escapes, comments, `$(…)`, `${…}` and backticks across lines,
//! so that text inside another variable's multi-line value is never taken for an
//! assignment.

use std::ops::Range;

use super::args::Ch;
use super::{line_of, EditError};
use crate::i18n::gettext_f;

/// One shell word, as the bytes `start..end` of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub start: usize,
    pub end: usize,
    /// The word runs a command: `$(…)`, `` `…` `` (or `$((…))`).
    pub subst: bool,
    /// `NAME=(…)`: the array's items and the bytes of its parentheses.
    pub array: Option<Array>,
}

/// The items of a bash array assignment; `open` and `close` are the offsets of `(` and `)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Array {
    pub open: usize,
    pub close: usize,
    pub items: Vec<Word>,
}

/// A simple command: its words, and whether it has its line(s) to itself (it starts a
/// line and ends at a newline or the end of the text, a comment aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command {
    pub words: Vec<Word>,
    pub alone: bool,
}

/// Why a text cannot be lexed; the offset is where the trouble starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LexError {
    /// A quote, `$(`, `${`, backtick or array parenthesis that is never closed.
    Unterminated(usize),
    /// Nesting too deep, or an array holding an operator.
    TooComplex(usize),
}

impl LexError {
    /// The error as the user sees it.
    pub fn into_edit_error(self, file: &'static str, text: &str) -> EditError {
        let (LexError::Unterminated(at) | LexError::TooComplex(at)) = self;
        let line = line_of(text, at);
        let n = line.to_string();
        let message = match self {
            LexError::Unterminated(_) => gettext_f(
                "The quote or bracket opened on line {line} is never closed.",
                &[("line", &n)],
            ),
            LexError::TooComplex(_) => gettext_f(
                "Line {line} is too complex for Passthrough to read safely.",
                &[("line", &n)],
            ),
        };
        EditError::new(file, Some(line), message)
    }
}

/// Adds `line` at the end of a shell fragment as a command of its own: after a final
/// backslash-newline (a continuation with nothing to continue) an empty line comes first.
pub(crate) fn append_command(text: &str, line: &str) -> String {
    let t = text.strip_suffix('\n').unwrap_or(text);
    let t = t.strip_suffix('\r').unwrap_or(t);
    let continues = (t.len() - t.trim_end_matches('\\').len()) % 2 == 1;
    if !continues {
        return super::lines::append_line(text, line);
    }
    let nl = super::lines::newline(text);
    let base = if text.ends_with('\n') {
        format!("{text}{nl}")
    } else {
        format!("{text}{nl}{nl}")
    };
    super::lines::append_line(&base, line)
}

/// Refuses the assignment `command.words[k]` of `var` unless it has its line to itself
/// (after an optional `export`) and runs no command.
pub(crate) fn check_assignment(
    file: &'static str,
    text: &str,
    var: &str,
    command: &Command,
    k: usize,
) -> Result<(), EditError> {
    let word = &command.words[k];
    let first = &command.words[0];
    let exported = k == 1 && &text[first.start..first.end] == "export";
    let alone = command.alone && (k == 0 || exported) && command.words.len() == k + 1;
    let subst = word.subst || word.array.iter().flat_map(|a| &a.items).any(|i| i.subst);
    if alone && !subst {
        return Ok(());
    }
    let line = line_of(text, word.start);
    let n = line.to_string();
    let args = [("line", n.as_str()), ("name", var)];
    let message = if !alone {
        gettext_f(
            "Line {line} sets {name} together with other commands; Passthrough edits it only when the assignment has its line to itself.",
            &args,
        )
    } else {
        gettext_f(
            "Line {line} computes {name} with a command ($(…) or `…`); Passthrough cannot edit it safely.",
            &args,
        )
    };
    Err(EditError::new(file, Some(line), message))
}

/// How deep `$(…)`, `${…}` and quotes may nest before the lexer gives up.
const MAX_DEPTH: usize = 64;

/// Splits `text` into simple commands.
pub(crate) fn commands(text: &str) -> Result<Vec<Command>, LexError> {
    let mut lx = Lexer {
        b: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    let mut out = Vec::new();
    let mut at_line_start = true;
    while lx.pos < lx.b.len() {
        let (words, end) = lx.command()?;
        if !words.is_empty() {
            let alone = at_line_start && end != End::Operator;
            out.push(Command { words, alone });
        }
        at_line_start = end != End::Operator;
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Newline,
    Operator,
    Eof,
}

struct Lexer<'a> {
    b: &'a [u8],
    pos: usize,
    depth: usize,
}

fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r')
}

fn is_operator(c: u8) -> bool {
    matches!(c, b';' | b'&' | b'|' | b'(' | b')')
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn peek_at(&self, k: usize) -> Option<u8> {
        self.b.get(self.pos + k).copied()
    }

    /// Skips blanks and backslash-newline continuations.
    fn skip_blanks(&mut self) {
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some(c), _) if is_blank(c) => self.pos += 1,
                (Some(b'\\'), Some(b'\n')) => self.pos += 2,
                (Some(b'\\'), Some(b'\r')) if self.peek_at(2) == Some(b'\n') => self.pos += 3,
                _ => return,
            }
        }
    }

    /// Skips a backslash and what it escapes (a CRLF line ending whole).
    fn skip_escape(&mut self) {
        let crlf = self.peek_at(1) == Some(b'\r') && self.peek_at(2) == Some(b'\n');
        self.pos = (self.pos + if crlf { 3 } else { 2 }).min(self.b.len());
    }

    /// Skips a comment up to (not over) the newline.
    fn skip_comment(&mut self) {
        while self.peek().is_some_and(|c| c != b'\n') {
            self.pos += 1;
        }
    }

    /// One simple command and what ended it.
    fn command(&mut self) -> Result<(Vec<Word>, End), LexError> {
        let mut words = Vec::new();
        loop {
            self.skip_blanks();
            match self.peek() {
                None => return Ok((words, End::Eof)),
                Some(b'\n') => {
                    self.pos += 1;
                    return Ok((words, End::Newline));
                }
                Some(b'#') => self.skip_comment(),
                Some(c) if is_operator(c) => {
                    while self.peek().is_some_and(is_operator) {
                        self.pos += 1;
                    }
                    return Ok((words, End::Operator));
                }
                Some(_) => words.push(self.word()?),
            }
        }
    }

    /// One word, from a character that is neither blank nor an operator.
    fn word(&mut self) -> Result<Word, LexError> {
        let start = self.pos;
        let mut subst = false;
        let mut array = None;
        while let Some(c) = self.peek() {
            match c {
                b'\n' => break,
                b'(' if self.assigns(start) => {
                    array = Some(self.array()?);
                    break;
                }
                c if is_blank(c) || is_operator(c) => break,
                b'\\' => self.skip_escape(),
                b'\'' => self.single()?,
                b'"' => subst |= self.double()?,
                b'`' => {
                    self.backtick()?;
                    subst = true;
                }
                b'$' => subst |= self.dollar()?,
                _ => self.pos += 1,
            }
        }
        Ok(Word {
            start,
            end: self.pos,
            subst,
            array,
        })
    }

    /// Whether the word so far is `NAME=` or `NAME+=` (an array may follow).
    fn assigns(&self, start: usize) -> bool {
        let w = &self.b[start..self.pos];
        let name = w
            .strip_suffix(b"+=")
            .or_else(|| w.strip_suffix(b"="))
            .unwrap_or_default();
        is_name(name)
    }

    fn enter(&mut self) -> Result<(), LexError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(LexError::TooComplex(self.pos));
        }
        Ok(())
    }

    /// `'…'`, from the opening quote.
    fn single(&mut self) -> Result<(), LexError> {
        let open = self.pos;
        self.pos += 1;
        match self.b[self.pos..].iter().position(|&c| c == b'\'') {
            Some(k) => {
                self.pos += k + 1;
                Ok(())
            }
            None => Err(LexError::Unterminated(open)),
        }
    }

    /// `"…"`, from the opening quote; true if it runs a command.
    fn double(&mut self) -> Result<bool, LexError> {
        let open = self.pos;
        self.enter()?;
        self.pos += 1;
        let mut subst = false;
        loop {
            match self.peek() {
                None => return Err(LexError::Unterminated(open)),
                Some(b'"') => break,
                Some(b'\\') => self.skip_escape(),
                Some(b'`') => {
                    self.backtick()?;
                    subst = true;
                }
                Some(b'$') => subst |= self.dollar()?,
                Some(_) => self.pos += 1,
            }
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(subst)
    }

    /// `` `…` ``, from the opening backtick.
    fn backtick(&mut self) -> Result<(), LexError> {
        let open = self.pos;
        self.pos += 1;
        loop {
            match self.peek() {
                None => return Err(LexError::Unterminated(open)),
                Some(b'`') => break,
                Some(b'\\') => self.skip_escape(),
                Some(_) => self.pos += 1,
            }
        }
        self.pos += 1;
        Ok(())
    }

    /// `$…` from the dollar: `$(…)` and `${…}` are skipped whole; true if it runs a
    /// command (`$(…)`, or one inside `${…}`).
    fn dollar(&mut self) -> Result<bool, LexError> {
        match self.peek_at(1) {
            Some(b'(') => {
                self.nested(b'(', b')')?;
                Ok(true)
            }
            Some(b'{') => self.nested(b'{', b'}'),
            _ => {
                self.pos += 1;
                Ok(false)
            }
        }
    }

    /// `$(…)` or `${…}` from the dollar, counting nested brackets and skipping quotes; true
    /// if a command runs inside.
    fn nested(&mut self, open_c: u8, close_c: u8) -> Result<bool, LexError> {
        let open = self.pos;
        self.enter()?;
        self.pos += 2;
        let mut level = 1usize;
        let mut subst = false;
        while level > 0 {
            match self.peek() {
                None => return Err(LexError::Unterminated(open)),
                Some(b'\\') => self.skip_escape(),
                Some(b'\'') => self.single()?,
                Some(b'"') => subst |= self.double()?,
                Some(b'`') => {
                    self.backtick()?;
                    subst = true;
                }
                Some(b'$') if self.peek_at(1) == Some(b'(') => {
                    self.nested(b'(', b')')?;
                    subst = true;
                }
                Some(c) => {
                    if c == open_c {
                        level += 1;
                    } else if c == close_c {
                        level -= 1;
                    }
                    self.pos += 1;
                }
            }
        }
        self.depth -= 1;
        Ok(subst)
    }

    /// `(…)` of an array assignment, from the parenthesis.
    fn array(&mut self) -> Result<Array, LexError> {
        let open = self.pos;
        self.enter()?;
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_blanks();
            match self.peek() {
                None => return Err(LexError::Unterminated(open)),
                Some(b'\n') => self.pos += 1,
                Some(b'#') => self.skip_comment(),
                Some(b')') => break,
                Some(c) if is_operator(c) => return Err(LexError::TooComplex(self.pos)),
                Some(_) => items.push(self.word()?),
            }
        }
        let close = self.pos;
        self.pos += 1;
        self.depth -= 1;
        Ok(Array { open, close, items })
    }
}

/// A shell variable name.
pub(crate) fn is_name(s: &[u8]) -> bool {
    matches!(s.first(), Some(c) if c.is_ascii_alphabetic() || *c == b'_')
        && s.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// How a part of a word is quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quote {
    None,
    Single,
    Double,
}

/// A run of a word with one kind of quoting; `inner` is its content without the quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub quote: Quote,
    pub inner: Range<usize>,
}

/// A word's value after quote removal (expansions such as `$VAR` stay as they are written),
/// each character with its source bytes, and the word's quoting segments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub chars: Vec<Ch>,
    pub segments: Vec<Segment>,
}

/// Removes the quoting of the word `text[range]` (which the lexer found balanced).
pub(crate) fn decode(text: &str, range: Range<usize>) -> Decoded {
    let mut d = Decoded::default();
    let mut pos = range.start;
    while pos < range.end {
        let quote = match text.as_bytes()[pos] {
            b'\'' => Quote::Single,
            b'"' => Quote::Double,
            _ => Quote::None,
        };
        let start = if quote == Quote::None { pos } else { pos + 1 };
        let end = match quote {
            Quote::None => decode_unquoted(text, start, range.end, &mut d.chars),
            Quote::Single => decode_single(text, start, range.end, &mut d.chars),
            Quote::Double => decode_double(text, start, range.end, &mut d.chars),
        };
        d.segments.push(Segment {
            quote,
            inner: start..end,
        });
        pos = if quote == Quote::None { end } else { end + 1 };
    }
    d
}

fn char_at(text: &str, pos: usize) -> char {
    text[pos..].chars().next().unwrap_or('\0')
}

fn push(out: &mut Vec<Ch>, c: char, start: usize, end: usize) {
    out.push(Ch { c, start, end });
}

/// The length of a backslash-newline at `pos` (`\` `\n` or `\` `\r\n`), if there is one.
fn continuation(text: &str, pos: usize) -> Option<usize> {
    let rest = &text.as_bytes()[pos..];
    if rest.starts_with(b"\\\n") {
        Some(2)
    } else if rest.starts_with(b"\\\r\n") {
        Some(3)
    } else {
        None
    }
}

/// Unquoted characters up to a quote or `end`; returns where they stop.
fn decode_unquoted(text: &str, mut pos: usize, end: usize, out: &mut Vec<Ch>) -> usize {
    while pos < end {
        let c = char_at(text, pos);
        match c {
            '\'' | '"' => break,
            '\\' => {
                if let Some(n) = continuation(text, pos) {
                    pos += n;
                } else if pos + 1 < end {
                    let e = char_at(text, pos + 1);
                    push(out, e, pos, pos + 1 + e.len_utf8());
                    pos += 1 + e.len_utf8();
                } else {
                    push(out, c, pos, pos + 1);
                    pos += 1;
                }
            }
            '$' if text[pos..end].starts_with("${") => pos = copy_braces(text, pos, end, out),
            _ => {
                push(out, c, pos, pos + c.len_utf8());
                pos += c.len_utf8();
            }
        }
    }
    pos
}

/// Copies a `${…}` expansion as it is written; returns where it stops.
fn copy_braces(text: &str, pos: usize, end: usize, out: &mut Vec<Ch>) -> usize {
    let stop = pos + braces_len(&text[pos..end]);
    for (i, c) in text[pos..stop].char_indices() {
        push(out, c, pos + i, pos + i + c.len_utf8());
    }
    stop
}

/// The length of the `${…}` expansion at the start of `s` (all of `s` if it is not closed),
/// reading quotes and escapes inside it as the lexer does.
fn braces_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut level = 0usize;
    let mut pos = 1;
    while pos < b.len() {
        match b[pos] {
            b'\\' => pos += 1,
            b'\'' => {
                pos += b[pos + 1..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map_or(b.len(), |k| k + 1)
            }
            b'"' => pos += double_len(&b[pos..]) - 1,
            b'{' => level += 1,
            b'}' => {
                level -= 1;
                if level == 0 {
                    return pos + 1;
                }
            }
            _ => {}
        }
        pos += 1;
    }
    b.len()
}

/// The length of the `"…"` at the start of `b`, escapes skipped (all of `b` if not closed).
fn double_len(b: &[u8]) -> usize {
    let mut pos = 1;
    while pos < b.len() {
        match b[pos] {
            b'\\' => pos += 1,
            b'"' => return pos + 1,
            _ => {}
        }
        pos += 1;
    }
    b.len()
}

/// The inside of `'…'` from after the quote; returns the offset of the closing quote.
fn decode_single(text: &str, mut pos: usize, end: usize, out: &mut Vec<Ch>) -> usize {
    while pos < end {
        let c = char_at(text, pos);
        if c == '\'' {
            break;
        }
        push(out, c, pos, pos + c.len_utf8());
        pos += c.len_utf8();
    }
    pos
}

/// The inside of `"…"` from after the quote; returns the offset of the closing quote.
fn decode_double(text: &str, mut pos: usize, end: usize, out: &mut Vec<Ch>) -> usize {
    while pos < end {
        let c = char_at(text, pos);
        match c {
            '"' => break,
            '$' if text[pos..end].starts_with("${") => pos = copy_braces(text, pos, end, out),
            '\\' => {
                if let Some(n) = continuation(text, pos) {
                    pos += n;
                    continue;
                }
                let e = char_at(text, pos + 1);
                if matches!(e, '$' | '`' | '"' | '\\') {
                    push(out, e, pos, pos + 2);
                    pos += 2;
                } else {
                    push(out, c, pos, pos + 1);
                    pos += 1;
                }
            }
            _ => {
                push(out, c, pos, pos + c.len_utf8());
                pos += c.len_utf8();
            }
        }
    }
    pos
}

/// The decoded text.
pub(crate) fn string(chars: &[Ch]) -> String {
    chars.iter().map(|c| c.c).collect()
}

/// Writes `word` inside double quotes so that [`decode`] gives it back and the shell
/// expands nothing new: `\`, `"` and `` ` `` are escaped, and `$` before `(`; a `${…}`
/// expansion is copied as it is.
pub(crate) fn escape_double(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut pos = 0;
    while let Some(c) = word[pos..].chars().next() {
        if word[pos..].starts_with("${") {
            let len = braces_len(&word[pos..]);
            out.push_str(&word[pos..pos + len]);
            pos += len;
            continue;
        }
        if matches!(c, '\\' | '"' | '`') || word[pos..].starts_with("$(") {
            out.push('\\');
        }
        out.push(c);
        pos += c.len_utf8();
    }
    out
}

/// Whether `word` can stand unquoted in a shell assignment.
pub(crate) fn is_bare(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-=:,/+@%".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words_of(text: &str) -> Vec<Vec<String>> {
        commands(text)
            .unwrap()
            .iter()
            .map(|c| {
                c.words
                    .iter()
                    .map(|w| text[w.start..w.end].to_owned())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn quotes_span_lines_and_hide_assignments() {
        let text = "A=\"x\nB=y\" # c\nexport C='q' D=1; E=$(f \"(\" )\n";
        assert_eq!(
            words_of(text),
            [
                vec!["A=\"x\nB=y\""],
                vec!["export", "C='q'", "D=1"],
                vec!["E=$(f \"(\" )"]
            ]
        );
        let cmds = commands(text).unwrap();
        assert!(cmds[0].alone && !cmds[1].alone && !cmds[2].alone);
        assert!(cmds[2].words[0].subst);
    }

    #[test]
    fn arrays_and_errors() {
        let text = "MODULES=(a \"b c\" # x\n d)\n";
        let cmds = commands(text).unwrap();
        let array = cmds[0].words[0].array.as_ref().unwrap();
        assert_eq!(array.items.len(), 3);
        assert_eq!(&text[array.open..=array.close], "(a \"b c\" # x\n d)");
        assert_eq!(commands("A=\"x"), Err(LexError::Unterminated(2)));
        assert_eq!(commands("A=(a"), Err(LexError::Unterminated(2)));
        assert!(matches!(
            commands(&"\"$(".repeat(100)),
            Err(LexError::TooComplex(_))
        ));
    }

    #[test]
    fn decoding_keeps_expansions_and_sources() {
        let text = r#""a \"b\" $X \
c"'d e'f\ g"#;
        let d = decode(text, 0..text.len());
        assert_eq!(string(&d.chars), "a \"b\" $X cd ef g");
        assert_eq!(d.segments.len(), 3);
        assert_eq!(escape_double(r#"a"b\c`$(x)$y"#), r#"a\"b\\c\`\$(x)$y"#);
    }
}
