//! Lines of a text file, with their offsets, and adding a line in the file's own style.

/// One line: `start..content_end` is its text, `content_end..end` its line ending (`\n`,
/// `\r\n` or nothing on a last line without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line {
    pub start: usize,
    pub content_end: usize,
    pub end: usize,
    /// 1-based.
    pub number: usize,
}

impl Line {
    pub fn content<'a>(&self, text: &'a str) -> &'a str {
        &text[self.start..self.content_end]
    }
}

/// The lines of `text`.
pub(crate) fn lines(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut start = 0;
    for (k, piece) in text.split_inclusive('\n').enumerate() {
        let end = start + piece.len();
        let body = piece.strip_suffix('\n').unwrap_or(piece);
        let body = if piece.ends_with('\n') {
            body.strip_suffix('\r').unwrap_or(body)
        } else {
            body
        };
        out.push(Line {
            start,
            content_end: start + body.len(),
            end,
            number: k + 1,
        });
        start = end;
    }
    out
}

/// The file's line ending: CRLF when its first line ends so, else LF.
pub(crate) fn newline(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if i > 0 && text.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// Adds `line` at the end of `text`, keeping the file's convention: a file that ends with a
/// newline still does, one that does not still does not.
pub(crate) fn append_line(text: &str, line: &str) -> String {
    let nl = newline(text);
    if text.is_empty() {
        format!("{line}{nl}")
    } else if text.ends_with('\n') {
        format!("{text}{line}{nl}")
    } else {
        format!("{text}{nl}{line}")
    }
}

/// Finds the line of an offset in O(log n).
pub(crate) struct LineIndex(Vec<usize>);

impl LineIndex {
    pub fn new(text: &str) -> Self {
        Self(text.match_indices('\n').map(|(i, _)| i).collect())
    }

    /// The 1-based line that byte `offset` is on.
    pub fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset) + 1
    }
}

/// The bytes of the line(s) holding `start..end` (with the final line ending), if nothing
/// but blanks shares those lines with `start..end`.
pub(crate) fn blank_around(text: &str, start: usize, end: usize) -> Option<std::ops::Range<usize>> {
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i + 1);
    let blank = |s: &str| s.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    (blank(&text[line_start..start]) && blank(&text[end..line_end])).then_some(line_start..line_end)
}

/// `text` with each range replaced; the ranges must not overlap (an empty range, an
/// insertion, may start where another range starts).
pub(crate) fn apply_edits(text: &str, mut edits: Vec<(std::ops::Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    for (range, new) in edits {
        out.push_str(&text[cursor..range.start.max(cursor)]);
        out.push_str(&new);
        cursor = cursor.max(range.end);
    }
    out.push_str(&text[cursor..]);
    out
}

/// The leading spaces and tabs of `s`.
pub(crate) fn indent(s: &str) -> &str {
    &s[..s.len() - s.trim_start_matches([' ', '\t']).len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_endings() {
        let text = "a\r\nb\n\nc";
        let l = lines(text);
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].content(text), "a");
        assert_eq!(&text[l[0].content_end..l[0].end], "\r\n");
        assert_eq!(l[3].content(text), "c");
        assert_eq!(l[3].number, 4);
        assert_eq!(newline(text), "\r\n");
        assert_eq!(append_line("x", "y"), "x\ny");
        assert_eq!(append_line("x\r\n", "y"), "x\r\ny\r\n");
        assert_eq!(append_line("", "y"), "y\n");
        let index = LineIndex::new(text);
        assert_eq!(
            (index.line(0), index.line(3), index.line(5), index.line(6)),
            (1, 2, 3, 4)
        );
        assert_eq!(blank_around(" a \nb", 1, 2), Some(0..4));
        assert_eq!(blank_around("(a \nb", 1, 2), None);
        assert_eq!(
            apply_edits("abc", vec![(1..2, "X".into()), (0..0, "<".into())]),
            "<aXc"
        );
    }
}
