//! systemd-boot entries, `/boot/loader/entries/*.conf`. systemd-boot joins every `options`
//! line with spaces, so all of them are one list of arguments: removals apply to all,
//! `SetKey` rewrites the key where it is, and new arguments go to the last `options` line
//! (a new `options` line at the end when there is none). The whitespace between `options`
//! and its value stays as found; a line whose arguments are all removed goes.

use std::ops::Range;

use super::args::{self, plain_chars, Item, SrcWord};
use super::lines::{append_line, lines, Line};
use super::{planned_items, verified, EditError, KargOp};
use crate::i18n::gettext_f;

/// Where the entries are, on the usual ESP mount (`/efi` and `/boot/efi` hold them too).
pub const PATH: &str = "/boot/loader/entries";

/// One `options` line: its value region (inside quotes if the value is quoted) and the
/// indices of its words among all the entry's arguments.
struct OptionsLine {
    line: Line,
    region: Range<usize>,
    /// Whether whitespace separates `options` from the value.
    separated: bool,
    words: Range<usize>,
}

/// The arguments of all `options` lines, in order.
pub fn kernel_args(text: &str) -> Result<Vec<String>, EditError> {
    parse(text).map(|(_, words)| args::texts(&words))
}

/// Applies `ops` to the entry's arguments.
pub fn edit(text: &str, ops: &[KargOp]) -> Result<String, EditError> {
    let (options, words) = parse(text)?;
    let all = args::texts(&words);
    let Some(items) = planned_items(PATH, &all, ops)? else {
        return Ok(text.to_owned());
    };
    let expected: Vec<String> = items.iter().map(|i| i.text(&all).to_owned()).collect();
    let out = if options.is_empty() {
        append_line(text, &format!("options {}", expected.join(" ")))
    } else {
        rewrite(text, &options, &words, &items)
    };
    verified(PATH, out, &expected, kernel_args)
}

fn parse(text: &str) -> Result<(Vec<OptionsLine>, Vec<SrcWord>), EditError> {
    let mut options = Vec::new();
    let mut words = Vec::new();
    for line in lines(text) {
        let Some((region, separated, quoted)) = options_value(text, &line) else {
            continue;
        };
        // An edit could make such a value end with the quote too, and systemd-boot would
        // then take both quotes off.
        if !quoted && text[region.clone()].starts_with(['"', '\'']) {
            return Err(half_quoted(line.number));
        }
        let chars = plain_chars(&text[region.clone()], region.start);
        let found = args::split_words(&chars).map_err(|_| unbalanced(line.number))?;
        let first = words.len();
        words.extend(found);
        options.push(OptionsLine {
            line,
            region,
            separated,
            words: first..words.len(),
        });
    }
    Ok((options, words))
}

/// The value region of an `options` line, whether whitespace follows the key, and whether
/// the value is quoted (systemd-boot takes off quotes that open and close it).
fn options_value(text: &str, line: &Line) -> Option<(Range<usize>, bool, bool)> {
    let content = line.content(text);
    let body = content.trim_start_matches([' ', '\t']);
    let rest = body.strip_prefix("options")?;
    let value = rest.trim_start_matches([' ', '\t']);
    let separated = value.len() < rest.len();
    if !separated && !value.is_empty() {
        return None;
    }
    let start = line.content_end - value.len();
    let trimmed = value.trim_end_matches([' ', '\t']);
    let quoted = trimmed.len() >= 2
        && (trimmed.starts_with('"') && trimmed.ends_with('"')
            || trimmed.starts_with('\'') && trimmed.ends_with('\''));
    let region = if quoted {
        start + 1..start + trimmed.len() - 1
    } else {
        start..line.content_end
    };
    Some((region, separated, quoted))
}

fn half_quoted(line: usize) -> EditError {
    let message = gettext_f(
        "The options on line {line} begin with a quote that does not close at the end of the line; Passthrough cannot edit them safely.",
        &[("line", &line.to_string())],
    );
    EditError::new(PATH, Some(line), message)
}

fn unbalanced(line: usize) -> EditError {
    let message = gettext_f(
        "The options on line {line} have a double quote that is never closed.",
        &[("line", &line.to_string())],
    );
    EditError::new(PATH, Some(line), message)
}

/// The entry with each `options` line holding its share of `items`.
fn rewrite(text: &str, options: &[OptionsLine], words: &[SrcWord], items: &[Item]) -> String {
    let shares = distribute(options, items);
    let mut out = String::new();
    let mut cursor = 0;
    for (option, share) in options.iter().zip(shares) {
        if share.is_empty() {
            if !option.words.is_empty() {
                out.push_str(&text[cursor..option.line.start]);
                cursor = option.line.end;
            }
            continue;
        }
        let region = &option.region;
        let local: Vec<SrcWord> = words[option.words.clone()]
            .iter()
            .map(|w| SrcWord {
                text: w.text.clone(),
                start: w.start - region.start,
                end: w.end - region.start,
            })
            .collect();
        let body = args::splice(&text[region.clone()], &local, &share, str::to_owned);
        out.push_str(&text[cursor..region.start]);
        if !option.separated {
            out.push(' ');
        }
        out.push_str(&body);
        cursor = region.end;
    }
    out.push_str(&text[cursor..]);
    out
}

/// Which line each item goes to: an original word's own line; a new word the line of the
/// next original word after it, or the last `options` line. Origins become line-local.
fn distribute(options: &[OptionsLine], items: &[Item]) -> Vec<Vec<Item>> {
    let line_of_word: Vec<usize> = options
        .iter()
        .enumerate()
        .flat_map(|(k, o)| o.words.clone().map(move |_| k))
        .collect();
    let mut next_origin = vec![None; items.len() + 1];
    for k in (0..items.len()).rev() {
        next_origin[k] = items[k].origin().or(next_origin[k + 1]);
    }
    let mut shares = vec![Vec::new(); options.len()];
    for (k, item) in items.iter().enumerate() {
        let target = next_origin[k]
            .and_then(|i| line_of_word.get(i).copied())
            .unwrap_or(options.len() - 1);
        shares[target].push(item.shifted(options[target].words.start));
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additions_go_to_the_last_options_line() {
        let text = "title Arch\noptions\troot=UUID=1 quiet\r\noptions rw\r\n";
        let ops = [
            KargOp::AddExact {
                arg: "iommu=pt".into(),
            },
            KargOp::RemoveExact {
                arg: "quiet".into(),
            },
        ];
        assert_eq!(
            edit(text, &ops).unwrap(),
            "title Arch\noptions\troot=UUID=1\r\noptions rw iommu=pt\r\n"
        );
        let gone = [KargOp::RemoveExact { arg: "rw".into() }];
        assert_eq!(
            edit(text, &gone).unwrap(),
            "title Arch\noptions\troot=UUID=1 quiet\r\n"
        );
        assert_eq!(edit("title A", &ops).unwrap(), "title A\noptions iommu=pt");
        assert_eq!(edit("options\n", &ops).unwrap(), "options iommu=pt\n");
    }
}
