//! Kernel arguments as words with a place in their file: splitting a value the way the
//! kernel does, applying ops while remembering where each word came from, and splicing the
//! result back so that kept words keep their bytes.

use std::collections::{HashMap, VecDeque};

use super::{EditError, KargOp};
use crate::cmdline::normalize_key;
use crate::i18n::gettext_f;

/// One character of a value after any quoting of its file was taken off, with the bytes of
/// the file it came from (`start..end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ch {
    pub c: char,
    pub start: usize,
    pub end: usize,
}

/// A kernel argument and the bytes of the file it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SrcWord {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// An argument after the ops: an original word kept as written, an original word's place
/// taken by a new text (`SetKey` in place), or a new word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Kept(usize),
    Replaced(usize, String),
    Added(String),
}

impl Item {
    pub fn text<'a>(&'a self, words: &'a [String]) -> &'a str {
        match self {
            Item::Kept(i) => &words[*i],
            Item::Replaced(_, s) | Item::Added(s) => s,
        }
    }

    /// The index of the original word whose place this item holds.
    pub fn origin(&self) -> Option<usize> {
        match self {
            Item::Kept(i) | Item::Replaced(i, _) => Some(*i),
            Item::Added(_) => None,
        }
    }

    /// The text of an item that is not an original word as written.
    pub fn new_text(&self) -> Option<&str> {
        match self {
            Item::Kept(_) => None,
            Item::Replaced(_, s) | Item::Added(s) => Some(s),
        }
    }

    /// The same item with its origin moved by `-offset` (for a slice of the words).
    pub fn shifted(&self, offset: usize) -> Item {
        match self {
            Item::Kept(i) => Item::Kept(i - offset),
            Item::Replaced(i, s) => Item::Replaced(i - offset, s.clone()),
            Item::Added(s) => Item::Added(s.clone()),
        }
    }
}

/// The kernel's whitespace (`isspace`).
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// The characters of a text that has no quoting of its own, at `base` in the file.
pub(crate) fn plain_chars(text: &str, base: usize) -> Vec<Ch> {
    text.char_indices()
        .map(|(i, c)| Ch {
            c,
            start: base + i,
            end: base + i + c.len_utf8(),
        })
        .collect()
}

/// A value that the kernel would split differently from what an editor can see: a double
/// quote or a `${` that is never closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unbalanced;

/// Splits like the kernel: whitespace separates arguments, except inside double quotes
/// (which stay part of the word). A shell expansion `${…}` also stays one word, read with
/// its quotes as the shell reads it.
pub(crate) fn split_words(chars: &[Ch]) -> Result<Vec<SrcWord>, Unbalanced> {
    let mut words = Vec::new();
    let mut current: Option<SrcWord> = None;
    let mut in_quotes = false;
    let mut k = 0;
    while k < chars.len() {
        let ch = chars[k];
        if is_space(ch.c) && !in_quotes {
            words.extend(current.take());
            k += 1;
            continue;
        }
        let next = if ch.c == '$' && chars.get(k + 1).is_some_and(|c| c.c == '{') {
            group_end(chars, k)?
        } else {
            if ch.c == '"' {
                in_quotes = !in_quotes;
            }
            k + 1
        };
        let word = current.get_or_insert_with(|| SrcWord {
            text: String::new(),
            start: ch.start,
            end: ch.end,
        });
        word.text.extend(chars[k..next].iter().map(|c| c.c));
        word.end = chars[next - 1].end;
        k = next;
    }
    if in_quotes {
        return Err(Unbalanced);
    }
    words.extend(current);
    Ok(words)
}

/// The index after the `}` that closes the `${` at `k`, reading escapes, quotes and nested
/// braces inside it as the shell does.
fn group_end(chars: &[Ch], k: usize) -> Result<usize, Unbalanced> {
    let mut level = 0usize;
    let mut quote: Option<char> = None;
    let mut i = k + 1;
    while i < chars.len() {
        let c = chars[i].c;
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('"') | None, '\\') => i += 1,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '{') => level += 1,
            (None, '}') => {
                level -= 1;
                if level == 0 {
                    return Ok(i + 1);
                }
            }
            (None, _) => {}
        }
        i += 1;
    }
    Err(Unbalanced)
}

/// The texts of the words.
pub(crate) fn texts(words: &[SrcWord]) -> Vec<String> {
    words.iter().map(|w| w.text.clone()).collect()
}

/// The key of an argument (`a.b` of `a.b=c`), normalized.
fn key_of(word: &str) -> String {
    normalize_key(word.split_once('=').map_or(word, |(k, _)| k))
}

/// Whether two words are the same argument: the kernel reads `-` and `_` in a parameter's
/// name as one (`vfio-pci.ids=1` is `vfio_pci.ids=1`); values compare exactly.
fn same_arg(a: &str, b: &str) -> bool {
    a == b || (key_of(a) == key_of(b) && value_of(a) == value_of(b))
}

fn value_of(word: &str) -> Option<&str> {
    word.split_once('=').map(|(_, v)| v)
}

/// `key` or `key=value`.
fn set_word(key: &str, value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{key}={v}"),
        None => key.to_owned(),
    }
}

/// [`super::apply_ops`], remembering where each word came from.
///
/// First the ops run in order on the words before `--`, which fixes which arguments remain
/// ([`simulate`]); then each remaining argument takes a place ([`place`]). Which arguments
/// remain does not depend on where they were, and an argument that is already there keeps
/// its place, so running the ops on their own result changes nothing.
pub(crate) fn apply_tracked(words: &[String], ops: &[KargOp]) -> Vec<Item> {
    let end = words.iter().position(|w| w == "--").unwrap_or(words.len());
    let finals = simulate(&words[..end], ops);
    let mut items = place(&words[..end], &finals);
    items.extend((end..words.len()).map(Item::Kept));
    items
}

/// An argument after the ops, and whether a `SetKey` wrote it last.
struct Final {
    text: String,
    set_key: bool,
}

/// The arguments left after running `ops` in order.
fn simulate(words: &[String], ops: &[KargOp]) -> Vec<Final> {
    let mut list: Vec<Final> = words
        .iter()
        .map(|w| Final {
            text: w.clone(),
            set_key: false,
        })
        .collect();
    for op in ops {
        match op {
            KargOp::SetKey { key, value } => {
                let norm = normalize_key(key);
                let wanted = set_word(key, value.as_deref());
                keep_one(&mut list, |w| key_of(w) == norm, &wanted, true);
            }
            KargOp::RemoveKey { key } => {
                let key = normalize_key(key);
                list.retain(|f| key_of(&f.text) != key);
            }
            KargOp::AddExact { arg } => keep_one(&mut list, |w| same_arg(w, arg), arg, false),
            KargOp::RemoveExact { arg } => list.retain(|f| !same_arg(&f.text, arg)),
        }
    }
    list
}

/// Leaves exactly one argument matching `pred`, saying `wanted` (as written if it already
/// does): the first match, or a new one at the end.
fn keep_one(list: &mut Vec<Final>, pred: impl Fn(&str) -> bool, wanted: &str, set_key: bool) {
    let Some(first) = list.iter().position(|f| pred(&f.text)) else {
        list.push(Final {
            text: wanted.to_owned(),
            set_key,
        });
        return;
    };
    let mut k = 0;
    list.retain(|f| {
        k += 1;
        k - 1 == first || !pred(&f.text)
    });
    if !same_arg(&list[first].text, wanted) {
        list[first].text = wanted.to_owned();
    }
    list[first].set_key = set_key;
}

/// Gives each remaining argument its place: an argument a `SetKey` wrote goes where its key
/// first was; any other goes where the first unclaimed original of the same argument was
/// (kept as written there); what has no place is added at the end, in op order.
fn place(words: &[String], finals: &[Final]) -> Vec<Item> {
    let mut by_arg: HashMap<(String, Option<&str>), VecDeque<usize>> = HashMap::new();
    let mut first_of_key: HashMap<String, usize> = HashMap::new();
    for (i, w) in words.iter().enumerate() {
        first_of_key.entry(key_of(w)).or_insert(i);
        by_arg
            .entry((key_of(w), value_of(w)))
            .or_default()
            .push_back(i);
    }
    let mut claimed = vec![false; words.len()];
    let mut target: Vec<Option<usize>> = vec![None; finals.len()];
    for (j, f) in finals.iter().enumerate().filter(|(_, f)| f.set_key) {
        if let Some(&i) = first_of_key.get(&key_of(&f.text)) {
            if !claimed[i] {
                claimed[i] = true;
                target[j] = Some(i);
            }
        }
    }
    for (j, f) in finals.iter().enumerate() {
        if target[j].is_some() {
            continue;
        }
        let Some(queue) = by_arg.get_mut(&(key_of(&f.text), value_of(&f.text))) else {
            continue;
        };
        while let Some(i) = queue.pop_front() {
            if !claimed[i] {
                claimed[i] = true;
                target[j] = Some(i);
                break;
            }
        }
    }
    let mut placed: Vec<(usize, Item)> = Vec::new();
    let mut added = Vec::new();
    for (f, t) in finals.iter().zip(target) {
        match t {
            Some(i) if same_arg(&words[i], &f.text) => placed.push((i, Item::Kept(i))),
            Some(i) => placed.push((i, Item::Replaced(i, f.text.clone()))),
            None => added.push(Item::Added(f.text.clone())),
        }
    }
    placed.sort_by_key(|(i, _)| *i);
    placed
        .into_iter()
        .map(|(_, item)| item)
        .chain(added)
        .collect()
}

/// Whether a word can be written into any of the files as one kernel argument: not empty,
/// no whitespace or control characters, and none of the quoting characters of the files.
fn is_safe_word(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| !c.is_control() && !is_space(c) && !"\"'\\`$".contains(c))
}

/// Refuses ops that would write something other than one plain kernel argument.
pub(crate) fn validate_ops(file: &'static str, ops: &[KargOp]) -> Result<(), EditError> {
    for op in ops {
        let (written, ok) = match op {
            KargOp::SetKey { key, value } => {
                let word = set_word(key, value.as_deref());
                let ok = !key.is_empty() && !key.contains('=') && is_safe_word(&word);
                (word, ok)
            }
            KargOp::AddExact { arg } => (arg.clone(), is_safe_word(arg)),
            KargOp::RemoveKey { .. } | KargOp::RemoveExact { .. } => continue,
        };
        if !ok {
            return Err(EditError::new(
                file,
                None,
                gettext_f(
                    "“{arg}” is not a kernel argument Passthrough can write.",
                    &[("arg", &written)],
                ),
            ));
        }
    }
    Ok(())
}

/// Rebuilds the text `src` of a value region whose words are `words` (spans relative to
/// `src`) so that it holds `items`. Kept words keep their bytes and, between kept
/// neighbours, the bytes that separated them; the space before the first word and after
/// the last one stays (also when no word is left). New words are written by `render` and
/// separated by one space.
pub(crate) fn splice(
    src: &str,
    words: &[SrcWord],
    items: &[Item],
    render: impl Fn(&str) -> String,
) -> String {
    let (Some(first), Some(last)) = (words.first(), words.last()) else {
        let new: Vec<String> = items
            .iter()
            .filter_map(Item::new_text)
            .map(render)
            .collect();
        return new.join(" ");
    };
    let mut out = src[..first.start].to_owned();
    let mut prev: Option<usize> = None;
    for (k, item) in items.iter().enumerate() {
        match (prev, item.origin()) {
            (Some(p), Some(i)) if i == p + 1 => out.push_str(&src[words[p].end..words[i].start]),
            _ if k > 0 => out.push(' '),
            _ => {}
        }
        match item {
            Item::Kept(i) => out.push_str(&src[words[*i].start..words[*i].end]),
            Item::Replaced(_, s) | Item::Added(s) => out.push_str(&render(s)),
        }
        prev = item.origin();
    }
    out.push_str(&src[last.end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        split_words(&plain_chars(s, 0))
            .unwrap()
            .into_iter()
            .map(|w| w.text)
            .collect()
    }

    #[test]
    fn splits_like_the_kernel() {
        assert_eq!(
            words("  a  b=\"x y\"\tc ${X:-p q} $Y"),
            ["a", "b=\"x y\"", "c", "${X:-p q}", "$Y"]
        );
        assert_eq!(split_words(&plain_chars("a \"b", 0)), Err(Unbalanced));
        assert_eq!(split_words(&plain_chars("${a", 0)), Err(Unbalanced));
    }

    #[test]
    fn splice_keeps_separators_of_kept_neighbours() {
        let src = " a  b   c ";
        let w = split_words(&plain_chars(src, 0)).unwrap();
        let items = vec![Item::Kept(0), Item::Kept(1), Item::Added("d".into())];
        assert_eq!(splice(src, &w, &items, str::to_owned), " a  b d ");
        let items = vec![Item::Kept(0), Item::Kept(2)];
        assert_eq!(splice(src, &w, &items, str::to_owned), " a c ");
    }
}
