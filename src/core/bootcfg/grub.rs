//! `/etc/default/grub`, the shell fragment that `grub-mkconfig` sources. The kernel
//! arguments Passthrough edits are those of `GRUB_CMDLINE_LINUX_DEFAULT` (the last
//! assignment wins, as in the shell); `GRUB_CMDLINE_LINUX` is only read.
//!
//! Every quoting style people write is understood: `"a b"`, `'a b'`, a bare word, `""`,
//! `export`, leading blanks, a comment after the value, `$VAR` and `${VAR}` expansions
//! (kept as opaque words), backslash-newline and `\"` inside double quotes. A rewritten
//! value keeps its quotes; a bare word that needs company becomes double-quoted. Values
//! computed by a command, unclosed quotes and lines with more than one command are refused.

use std::ops::Range;

use super::args::{self, Item, SrcWord};
use super::shell::{self, Command, Decoded, Quote, Word};
use super::{line_of, planned_items, verified, EditError, KargOp};
use crate::i18n::gettext_f;

/// The file's standard host path.
pub const PATH: &str = "/etc/default/grub";

/// The variable Passthrough edits.
pub const DEFAULT_VAR: &str = "GRUB_CMDLINE_LINUX_DEFAULT";

/// The variable for every boot entry, recovery included: read only.
pub const LINUX_VAR: &str = "GRUB_CMDLINE_LINUX";

/// The words of the effective `GRUB_CMDLINE_LINUX_DEFAULT` (empty when it is not set).
pub fn kernel_args(text: &str) -> Result<Vec<String>, EditError> {
    Ok(effective(text, DEFAULT_VAR)?
        .map(|v| args::texts(&v.words))
        .unwrap_or_default())
}

/// The words of the effective `GRUB_CMDLINE_LINUX` (empty when it is not set).
pub fn linux_args(text: &str) -> Result<Vec<String>, EditError> {
    Ok(effective(text, LINUX_VAR)?
        .map(|v| args::texts(&v.words))
        .unwrap_or_default())
}

/// Applies `ops` to `GRUB_CMDLINE_LINUX_DEFAULT`, rewriting only its effective value, or
/// adding `GRUB_CMDLINE_LINUX_DEFAULT="…"` at the end when the file has none.
pub fn edit(text: &str, ops: &[KargOp]) -> Result<String, EditError> {
    let current = effective(text, DEFAULT_VAR)?;
    let words = current
        .as_ref()
        .map(|v| args::texts(&v.words))
        .unwrap_or_default();
    let Some(items) = planned_items(PATH, &words, ops)? else {
        return Ok(text.to_owned());
    };
    let expected: Vec<String> = items.iter().map(|i| i.text(&words).to_owned()).collect();
    let out = match &current {
        Some(value) => rewrite(text, value, &items, &expected),
        None => {
            let line = format!("{DEFAULT_VAR}={}", render(&expected, Quote::Double));
            shell::append_command(text, &line)
        }
    };
    verified(PATH, out, &expected, kernel_args)
}

/// The effective assignment's value: its bytes, decoded characters and words.
struct Value {
    range: Range<usize>,
    decoded: Decoded,
    words: Vec<SrcWord>,
}

/// The last assignment of `var`, after checking that every assignment of it can be edited.
fn effective(text: &str, var: &str) -> Result<Option<Value>, EditError> {
    let commands = shell::commands(text).map_err(|e| e.into_edit_error(PATH, text))?;
    let mut last = None;
    for command in &commands {
        for (k, word) in command.words.iter().enumerate() {
            let raw = &text[word.start..word.end];
            let plus = raw.starts_with(&format!("{var}+="));
            if plus || raw.starts_with(&format!("{var}=")) {
                check(text, var, command, k, plus)?;
                last = Some(word.start + var.len() + 1..word.end);
            }
        }
    }
    let Some(range) = last else { return Ok(None) };
    let decoded = shell::decode(text, range.clone());
    let words = args::split_words(&decoded.chars).map_err(|_| {
        let line = line_of(text, range.start);
        let message = gettext_f(
            "The value of {name} on line {line} has a double quote that is never closed.",
            &[("name", var), ("line", &line.to_string())],
        );
        EditError::new(PATH, Some(line), message)
    })?;
    Ok(Some(Value {
        range,
        decoded,
        words,
    }))
}

/// Refuses an assignment that Passthrough cannot edit safely: `/bin/sh` has no `+=` and no
/// arrays.
fn check(text: &str, var: &str, command: &Command, k: usize, plus: bool) -> Result<(), EditError> {
    shell::check_assignment(PATH, text, var, command, k)?;
    let word: &Word = &command.words[k];
    if plus || word.array.is_some() {
        let line = line_of(text, word.start);
        let message = gettext_f(
            "Line {line} sets {name} in a form Passthrough cannot edit safely.",
            &[("line", &line.to_string()), ("name", var)],
        );
        return Err(EditError::new(PATH, Some(line), message));
    }
    Ok(())
}

/// The file with the value rewritten: in place inside its quotes when it is one quoted
/// string (kept words keep their bytes), else written anew in the value's quoting style.
fn rewrite(text: &str, value: &Value, items: &[Item], expected: &[String]) -> String {
    let with = |new_value: &str| {
        format!(
            "{}{}{}",
            &text[..value.range.start],
            new_value,
            &text[value.range.end..]
        )
    };
    if let Some(spliced) = splice_quoted(text, value, items) {
        let out = with(&spliced);
        if kernel_args(&out).is_ok_and(|w| w == expected) {
            return out;
        }
    }
    with(&render(expected, style(&value.decoded)))
}

/// The new value of a value that is exactly one `"…"` or `'…'`, edited in place.
fn splice_quoted(text: &str, value: &Value, items: &[Item]) -> Option<String> {
    let [segment] = value.decoded.segments.as_slice() else {
        return None;
    };
    let inner = segment.inner.clone();
    let whole = inner.start == value.range.start + 1 && inner.end + 1 == value.range.end;
    if segment.quote == Quote::None || !whole {
        return None;
    }
    let local: Vec<SrcWord> = value
        .words
        .iter()
        .map(|w| SrcWord {
            text: w.text.clone(),
            start: w.start - inner.start,
            end: w.end - inner.start,
        })
        .collect();
    let quote = if segment.quote == Quote::Double {
        '"'
    } else {
        '\''
    };
    let escape = |w: &str| match segment.quote {
        Quote::Double => shell::escape_double(w),
        _ => w.to_owned(),
    };
    let body = args::splice(&text[inner], &local, items, escape);
    Some(format!("{quote}{body}{quote}"))
}

/// The quoting a value is written in: single quotes if it used only those, bare if it used
/// none, else double quotes.
fn style(decoded: &Decoded) -> Quote {
    let all = |q: Quote| decoded.segments.iter().all(|s| s.quote == q);
    if decoded.segments.is_empty() || all(Quote::None) {
        Quote::None
    } else if all(Quote::Single) {
        Quote::Single
    } else {
        Quote::Double
    }
}

/// A value holding `words`, in `style` where the words allow it.
fn render(words: &[String], style: Quote) -> String {
    match (style, words) {
        (Quote::None, [word]) if shell::is_bare(word) => word.clone(),
        (Quote::Single, _) if !words.iter().any(|w| w.contains('\'')) => {
            format!("'{}'", words.join(" "))
        }
        _ => {
            let escaped: Vec<String> = words.iter().map(|w| shell::escape_double(w)).collect();
            format!("\"{}\"", escaped.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &str) -> KargOp {
        KargOp::SetKey {
            key: key.into(),
            value: Some(value.into()),
        }
    }

    #[test]
    fn styles() {
        let ops = [set("intel_iommu", "on")];
        for (before, after) in [
            (
                "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\n",
                "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash intel_iommu=on\"\n",
            ),
            (
                "GRUB_CMDLINE_LINUX_DEFAULT='quiet'\n",
                "GRUB_CMDLINE_LINUX_DEFAULT='quiet intel_iommu=on'\n",
            ),
            (
                "GRUB_CMDLINE_LINUX_DEFAULT=quiet # q\n",
                "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet intel_iommu=on\" # q\n",
            ),
            (
                "GRUB_CMDLINE_LINUX_DEFAULT=\n",
                "GRUB_CMDLINE_LINUX_DEFAULT=intel_iommu=on\n",
            ),
            (
                "  export GRUB_CMDLINE_LINUX_DEFAULT=\"\"\r\n",
                "  export GRUB_CMDLINE_LINUX_DEFAULT=\"intel_iommu=on\"\r\n",
            ),
            (
                "GRUB_TIMEOUT=5",
                "GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT=\"intel_iommu=on\"",
            ),
        ] {
            assert_eq!(edit(before, &ops).unwrap(), after, "{before:?}");
        }
    }

    #[test]
    fn refusals_name_the_line() {
        for (text, line) in [
            ("A=1\nGRUB_CMDLINE_LINUX_DEFAULT=\"$(cat /x)\"\n", 2),
            ("GRUB_CMDLINE_LINUX_DEFAULT=\"`cat /x`\"\n", 1),
            ("\n\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\n", 3),
            ("GRUB_TIMEOUT=5 GRUB_CMDLINE_LINUX_DEFAULT=quiet\n", 1),
            ("GRUB_CMDLINE_LINUX_DEFAULT=quiet; GRUB_TIMEOUT=5\n", 1),
            ("GRUB_CMDLINE_LINUX_DEFAULT+=\" x\"\n", 1),
        ] {
            let err = edit(text, &[set("iommu", "pt")]).unwrap_err();
            assert_eq!(err.line, Some(line), "{text:?}: {err}");
            assert!(kernel_args(text).is_err());
        }
    }
}
