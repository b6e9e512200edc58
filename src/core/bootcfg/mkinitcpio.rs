//! Arch's `/etc/mkinitcpio.conf` (a bash fragment; the same goes for drop-ins in
//! `/etc/mkinitcpio.conf.d/`): the `MODULES=(…)` array, on one line or many, with quoted
//! items and comments, or the old `MODULES="…"` string. The last `MODULES=` wins and each
//! `MODULES+=(…)` after it adds to it, as in bash. Removals apply to all of those; new
//! modules go at the end of the last one. Lines that only held removed modules go.

use std::ops::Range;

use super::args::{self, Item, SrcWord};
use super::lines::{apply_edits, blank_around, LineIndex};
use super::modlist::{self, removes};
use super::shell::{self, Quote, Word};
use super::EditError;

/// The file's standard host path.
pub const PATH: &str = "/etc/mkinitcpio.conf";

const VAR: &str = "MODULES";

/// The modules of the effective `MODULES`; empty when the file cannot be read (then
/// [`try_modules`] and [`edit`] say why).
pub fn modules(text: &str) -> Vec<String> {
    try_modules(text).unwrap_or_default()
}

/// The modules of the effective `MODULES`, or why the file cannot be read.
pub fn try_modules(text: &str) -> Result<Vec<String>, EditError> {
    Ok(names(&parse(text)?))
}

/// Removes the modules in `remove` (exact names, unless also in `add`) and adds those of
/// `add` that are missing.
pub fn edit(text: &str, add: &[&str], remove: &[&str]) -> Result<String, EditError> {
    modlist::validate(PATH, add, true)?;
    let assignments = parse(text)?;
    let current = names(&assignments);
    let expected = modlist::expected(&current, add, remove);
    if expected == current {
        return Ok(text.to_owned());
    }
    let out = if assignments.is_empty() {
        shell::append_command(text, &format!("{VAR}=({})", expected.join(" ")))
    } else {
        rewrite(text, &assignments, add, remove)
    };
    modlist::verified(PATH, out, &expected, try_modules)
}

/// One module of an assignment and its bytes.
struct Entry {
    name: String,
    start: usize,
    end: usize,
}

enum Form {
    /// `MODULES=(…)`; the offset of `(`.
    Array(usize),
    /// `MODULES="…"`: the value's bytes and quoting.
    Text(Range<usize>, Quote),
}

struct Assignment {
    form: Form,
    entries: Vec<Entry>,
}

fn names(assignments: &[Assignment]) -> Vec<String> {
    assignments
        .iter()
        .flat_map(|a| a.entries.iter().map(|e| e.name.clone()))
        .collect()
}

/// The assignments that make the effective value: the last `MODULES=` and the `MODULES+=`
/// after it.
fn parse(text: &str) -> Result<Vec<Assignment>, EditError> {
    let commands = shell::commands(text).map_err(|e| e.into_edit_error(PATH, text))?;
    let mut effective = Vec::new();
    for command in &commands {
        for (k, word) in command.words.iter().enumerate() {
            let raw = &text[word.start..word.end];
            let plus = raw.starts_with("MODULES+=");
            if !plus && !raw.starts_with("MODULES=") {
                continue;
            }
            shell::check_assignment(PATH, text, VAR, command, k)?;
            if !plus {
                effective.clear();
            }
            let value_start = word.start + VAR.len() + if plus { 2 } else { 1 };
            effective.push(assignment(text, word, value_start));
        }
    }
    Ok(effective)
}

fn assignment(text: &str, word: &Word, value_start: usize) -> Assignment {
    if let Some(array) = &word.array {
        let entries = array
            .items
            .iter()
            .map(|item| Entry {
                name: shell::string(&shell::decode(text, item.start..item.end).chars),
                start: item.start,
                end: item.end,
            })
            .collect();
        return Assignment {
            form: Form::Array(array.open),
            entries,
        };
    }
    let decoded = shell::decode(text, value_start..word.end);
    let value = shell::string(&decoded.chars);
    let entries = value
        .split([' ', '\t', '\n'])
        .filter(|n| !n.is_empty())
        .map(|n| Entry {
            name: n.to_owned(),
            start: 0,
            end: 0,
        })
        .collect();
    let quote = match decoded.segments.first() {
        Some(s) if decoded.segments.len() == 1 => s.quote,
        _ => Quote::Double,
    };
    Assignment {
        form: Form::Text(value_start..word.end, quote),
        entries,
    }
}

fn rewrite(text: &str, assignments: &[Assignment], add: &[&str], remove: &[&str]) -> String {
    let kept: Vec<String> = names(assignments)
        .into_iter()
        .filter(|n| !removes(n, add, remove))
        .collect();
    let new = modlist::missing(&kept, add);
    let index = LineIndex::new(text);
    let mut edits = Vec::new();
    let last = assignments.len() - 1;
    for (k, a) in assignments.iter().enumerate() {
        let additions = if k == last { new.as_slice() } else { &[] };
        let keeps: Vec<bool> = a
            .entries
            .iter()
            .map(|e| !removes(&e.name, add, remove))
            .collect();
        match &a.form {
            Form::Array(open) => array_edits(
                text, &index, *open, &a.entries, &keeps, additions, &mut edits,
            ),
            Form::Text(range, quote) => {
                if keeps.iter().all(|k| *k) && additions.is_empty() {
                    continue;
                }
                let mut list: Vec<&str> = a
                    .entries
                    .iter()
                    .zip(&keeps)
                    .filter(|(_, k)| **k)
                    .map(|(e, _)| e.name.as_str())
                    .collect();
                list.extend(additions.iter().map(String::as_str));
                edits.push((range.clone(), render_text(&list, *quote)));
            }
        }
    }
    apply_edits(text, edits)
}

/// The edits of one array: each line whose modules change is rebuilt (kept modules keep
/// their bytes), a line left with nothing but blanks goes, and new modules follow the last
/// kept one (or the parenthesis).
fn array_edits(
    text: &str,
    index: &LineIndex,
    open: usize,
    entries: &[Entry],
    keeps: &[bool],
    additions: &[String],
    edits: &mut Vec<(Range<usize>, String)>,
) {
    let last_kept = keeps.iter().rposition(|k| *k);
    if last_kept.is_none() && !additions.is_empty() {
        edits.push((open + 1..open + 1, additions.join(" ")));
    }
    let mut start = 0;
    while start < entries.len() {
        let line = index.line(entries[start].start);
        let end = start
            + entries[start..]
                .iter()
                .take_while(|e| index.line(e.start) == line)
                .count();
        let gets_additions = last_kept.is_some_and(|l| (start..end).contains(&l));
        line_edit(
            text,
            &entries[start..end],
            &keeps[start..end],
            gets_additions.then_some(additions),
            edits,
        );
        start = end;
    }
}

/// The edit of the modules that share one line, if they change.
fn line_edit(
    text: &str,
    entries: &[Entry],
    keeps: &[bool],
    additions: Option<&[String]>,
    edits: &mut Vec<(Range<usize>, String)>,
) {
    let additions = additions.unwrap_or_default();
    if keeps.iter().all(|k| *k) && additions.is_empty() {
        return;
    }
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return;
    };
    let mut items: Vec<Item> = (0..entries.len())
        .filter(|j| keeps[*j])
        .map(Item::Kept)
        .collect();
    if items.is_empty() {
        if let Some(whole) = blank_around(text, first.start, last.end) {
            edits.push((whole, String::new()));
            return;
        }
    }
    items.extend(additions.iter().cloned().map(Item::Added));
    let words: Vec<SrcWord> = entries
        .iter()
        .map(|e| SrcWord {
            text: e.name.clone(),
            start: e.start - first.start,
            end: e.end - first.start,
        })
        .collect();
    let body = args::splice(&text[first.start..last.end], &words, &items, str::to_owned);
    edits.push((first.start..last.end, body));
}

/// An old-style `MODULES="…"` value.
fn render_text(names: &[&str], quote: Quote) -> String {
    let joined = names.join(" ");
    match quote {
        Quote::Single => format!("'{joined}'"),
        Quote::None if names.len() == 1 && shell::is_bare(&joined) => joined,
        _ => format!("\"{}\"", shell::escape_double(&joined)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays() {
        let add = ["vfio_pci", "vfio"];
        for (before, after) in [
            ("MODULES=()\n", "MODULES=(vfio_pci vfio)\n"),
            ("MODULES=(nvidia)\n", "MODULES=(vfio_pci vfio)\n"),
            ("MODULES=(ext4 nvidia)\n", "MODULES=(ext4 vfio_pci vfio)\n"),
            (
                "MODULES=(\n  nvidia\n  ext4 # fs\n)\n",
                "MODULES=(\n  ext4 vfio_pci vfio # fs\n)\n",
            ),
            (
                "MODULES=\"nvidia ext4\"\n",
                "MODULES=\"ext4 vfio_pci vfio\"\n",
            ),
            ("HOOKS=(base)", "HOOKS=(base)\nMODULES=(vfio_pci vfio)"),
            (
                "MODULES=(a)\nMODULES+=(nvidia b)\n",
                "MODULES=(a)\nMODULES+=(b vfio_pci vfio)\n",
            ),
        ] {
            assert_eq!(
                edit(before, &add, &["nvidia"]).unwrap(),
                after,
                "{before:?}"
            );
        }
    }
}
