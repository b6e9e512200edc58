//! `/etc/kernel/cmdline`: the kernel arguments that `kernel-install` (systemd-boot, and
//! unified kernel images) writes into new boot entries. The file is one line of arguments;
//! its surrounding whitespace and final newline are kept.

use super::args::{self, plain_chars};
use super::{planned_items, verified, EditError, KargOp};
use crate::i18n::gettext_f;

/// The file's standard host path.
pub const PATH: &str = "/etc/kernel/cmdline";

/// The arguments in the file.
pub fn kernel_args(text: &str) -> Result<Vec<String>, EditError> {
    words(text).map(|w| args::texts(&w))
}

/// Applies `ops`; kept arguments keep their bytes and new ones go after the last.
pub fn edit(text: &str, ops: &[KargOp]) -> Result<String, EditError> {
    let words = words(text)?;
    let all = args::texts(&words);
    let Some(items) = planned_items(PATH, &all, ops)? else {
        return Ok(text.to_owned());
    };
    let expected: Vec<String> = items.iter().map(|i| i.text(&all).to_owned()).collect();
    let out = if words.is_empty() {
        format!("{}\n", expected.join(" "))
    } else {
        args::splice(text, &words, &items, str::to_owned)
    };
    verified(PATH, out, &expected, kernel_args)
}

fn words(text: &str) -> Result<Vec<args::SrcWord>, EditError> {
    args::split_words(&plain_chars(text, 0)).map_err(|_| {
        let message = gettext_f(
            "The kernel arguments have a double quote that is never closed.",
            &[],
        );
        EditError::new(PATH, None, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_in_place() {
        let text = "root=UUID=1 rw  quiet\n";
        let ops = [
            KargOp::RemoveExact {
                arg: "quiet".into(),
            },
            KargOp::AddExact {
                arg: "iommu=pt".into(),
            },
        ];
        assert_eq!(edit(text, &ops).unwrap(), "root=UUID=1 rw iommu=pt\n");
        assert_eq!(edit("", &ops).unwrap(), "iommu=pt\n");
        assert_eq!(edit("rw", &ops).unwrap(), "rw iommu=pt");
    }
}
