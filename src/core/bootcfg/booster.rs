//! Booster's `/etc/booster.yaml`: only the top-level `modules_force_load: a,b` line is
//! touched (its quoting, separator style and comment kept); it is added at the end when
//! the file has none. Other YAML forms of the list (a sequence) are refused.

use std::ops::Range;

use super::lines::{append_line, lines, Line};
use super::modlist;
use super::EditError;
use crate::i18n::gettext_f;

/// The file's standard host path.
pub const PATH: &str = "/etc/booster.yaml";

const KEY: &str = "modules_force_load";

/// The modules booster force-loads; empty when the file cannot be read (then
/// [`try_modules`] and [`edit`] say why).
pub fn modules(text: &str) -> Vec<String> {
    try_modules(text).unwrap_or_default()
}

/// The modules booster force-loads, or why the setting cannot be read.
pub fn try_modules(text: &str) -> Result<Vec<String>, EditError> {
    Ok(find(text)?.map(|s| s.items(text)).unwrap_or_default())
}

/// Removes the modules in `remove` (exact names, unless also in `add`) and adds those of
/// `add` that are missing.
pub fn edit(text: &str, add: &[&str], remove: &[&str]) -> Result<String, EditError> {
    modlist::validate(PATH, add, false)?;
    let setting = find(text)?;
    let current = setting.as_ref().map(|s| s.items(text)).unwrap_or_default();
    let expected = modlist::expected(&current, add, remove);
    if expected == current {
        return Ok(text.to_owned());
    }
    let out = match &setting {
        Some(s) => s.rewrite(text, &expected),
        None => append_line(text, &format!("{KEY}: {}", expected.join(","))),
    };
    modlist::verified(PATH, out, &expected, try_modules)
}

/// The setting's line and where its value is.
struct Setting {
    /// Right after the colon.
    after_colon: usize,
    /// The value as written (quotes included), without comment or trailing blanks.
    value: Range<usize>,
    /// The list inside the quotes, or the whole value.
    inner: Range<usize>,
    quote: Option<char>,
}

impl Setting {
    fn items(&self, text: &str) -> Vec<String> {
        text[self.inner.clone()]
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn rewrite(&self, text: &str, list: &[String]) -> String {
        let sep = if text[self.inner.clone()].contains(", ") {
            ", "
        } else {
            ","
        };
        let joined = list.join(sep);
        let (range, new) = match self.quote {
            Some(q) => (self.value.clone(), format!("{q}{joined}{q}")),
            None if self.value.is_empty() => {
                (self.after_colon..self.after_colon, format!(" {joined}"))
            }
            None if list.is_empty() => (self.after_colon..self.value.end, String::new()),
            None => (self.value.clone(), joined),
        };
        format!("{}{}{}", &text[..range.start], new, &text[range.end..])
    }
}

/// The one top-level `modules_force_load:` setting, if any.
fn find(text: &str) -> Result<Option<Setting>, EditError> {
    let all = lines(text);
    let mut found: Option<(usize, Setting)> = None;
    for (k, line) in all.iter().enumerate() {
        let content = line.content(text);
        let Some(rest) = content.strip_prefix(KEY).and_then(|r| r.strip_prefix(':')) else {
            continue;
        };
        if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
            continue;
        }
        if let Some((first, _)) = &found {
            return Err(twice(*first, line.number));
        }
        let setting = parse_value(text, line, line.start + KEY.len() + 1)
            .filter(|s| !(s.value.is_empty() && sequence_follows(text, &all[k + 1..])))
            .ok_or_else(|| unsupported(line.number))?;
        found = Some((line.number, setting));
    }
    Ok(found.map(|(_, s)| s))
}

/// The value after the colon, if it is a plain or quoted scalar.
fn parse_value(text: &str, line: &Line, after_colon: usize) -> Option<Setting> {
    let rest = &text[after_colon..line.content_end];
    let start = after_colon + (rest.len() - rest.trim_start_matches([' ', '\t']).len());
    let value_text = &text[start..line.content_end];
    let quote = value_text
        .chars()
        .next()
        .filter(|c| *c == '"' || *c == '\'');
    let (value, inner) = match quote {
        Some(q) => {
            let close = value_text[1..].find(q)? + 1;
            let tail = value_text[close + 1..].trim_start_matches([' ', '\t']);
            if !(tail.is_empty() || tail.starts_with('#')) {
                return None;
            }
            (start..start + close + 1, start + 1..start + close)
        }
        None => {
            if value_text.starts_with(['[', '{', '-', '|', '>', '&', '*', '!', '%', '@', '`']) {
                return None;
            }
            let end = comment_start(value_text).unwrap_or(value_text.len());
            let len = value_text[..end].trim_end_matches([' ', '\t']).len();
            (start..start + len, start..start + len)
        }
    };
    Some(Setting {
        after_colon,
        value,
        inner,
        quote,
    })
}

/// Where a comment starts in a plain value (`#` at the start or after a blank).
fn comment_start(value: &str) -> Option<usize> {
    if value.starts_with('#') {
        return Some(0);
    }
    value
        .find(" #")
        .or_else(|| value.find("\t#"))
        .map(|i| i + 1)
}

/// Whether the lines after an empty value hold a YAML block sequence (`  - a`).
fn sequence_follows(text: &str, rest: &[Line]) -> bool {
    rest.iter()
        .map(|l| l.content(text).trim_start())
        .find(|c| !c.is_empty() && !c.starts_with('#'))
        .is_some_and(|c| c.starts_with('-'))
}

fn twice(first: usize, line: usize) -> EditError {
    let message = gettext_f(
        "“modules_force_load” is set twice, on lines {first} and {line}.",
        &[("first", &first.to_string()), ("line", &line.to_string())],
    );
    EditError::new(PATH, Some(line), message)
}

fn unsupported(line: usize) -> EditError {
    let message = gettext_f(
        "Line {line} lists the modules in a form Passthrough cannot edit; write them as “modules_force_load: a,b”.",
        &[("line", &line.to_string())],
    );
    EditError::new(PATH, Some(line), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let add = ["vfio_pci", "vfio"];
        for (before, after) in [
            (
                "modules_force_load: nvidia\n",
                "modules_force_load: vfio_pci,vfio\n",
            ),
            (
                "modules_force_load: \"a, nvidia\" # x\n",
                "modules_force_load: \"a, vfio_pci, vfio\" # x\n",
            ),
            (
                "modules_force_load:\n",
                "modules_force_load: vfio_pci,vfio\n",
            ),
            (
                "compression: zstd",
                "compression: zstd\nmodules_force_load: vfio_pci,vfio",
            ),
        ] {
            assert_eq!(
                edit(before, &add, &["nvidia"]).unwrap(),
                after,
                "{before:?}"
            );
        }
        assert_eq!(
            edit("modules_force_load: nvidia # x\n", &[], &["nvidia"]).unwrap(),
            "modules_force_load: # x\n"
        );
        assert!(edit("modules_force_load:\n  - a\n", &add, &[]).is_err());
        assert!(edit("modules_force_load: a\nmodules_force_load: b\n", &add, &[]).is_err());
    }
}
