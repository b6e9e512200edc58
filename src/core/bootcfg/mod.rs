//! Editors of the boot and initramfs configuration files: pure functions from the text of a
//! file to its new text, without I/O.
//!
//! Every editor keeps each byte it does not mean to change (comments, blank lines, other
//! settings, CRLF line endings, a missing final newline). Ops that change nothing give back
//! the input byte for byte, and applying the same ops twice gives the same text as once.
//! What an editor cannot change safely (a value computed by a command, an unclosed quote),
//! it refuses with an [`EditError`] that names the line.
//!
//! The kernel-argument editors ([`grub`], [`kernel_cmdline`], [`loader_entry`],
//! [`kernelstub`]) share the semantics of [`apply_ops`]: for any file they accept,
//! `kernel_args(edit(f, ops)) == apply_ops(kernel_args(f), ops)`. Each one checks that
//! equation on its own output before returning it.

pub use crate::plan::KargOp;

use crate::i18n::gettext_f;

pub mod booster;
pub mod dracut;
pub mod grub;
pub mod initramfs_tools;
pub mod kernel_cmdline;
pub mod kernelstub;
pub mod loader_entry;
pub mod mkinitcpio;
pub mod modprobe;

mod args;
mod json;
mod lines;
mod modlist;
mod shell;

use args::Item;

/// Why a file cannot be read or edited safely. `message` is translated and, when the
/// problem is on one line, names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditError {
    /// The file's standard host path (the `PATH` of its module).
    pub file: &'static str,
    /// The 1-based line of the problem, when there is one.
    pub line: Option<usize>,
    pub message: String,
}

impl EditError {
    pub(crate) fn new(file: &'static str, line: Option<usize>, message: String) -> Self {
        Self {
            file,
            line,
            message,
        }
    }

    /// The editor's own check of its output failed: nothing is written.
    pub(crate) fn unsafe_rewrite(file: &'static str) -> Self {
        Self::new(
            file,
            None,
            gettext_f(
                "Passthrough could not rewrite the kernel arguments safely; the file was left as it is.",
                &[],
            ),
        )
    }
}

impl std::fmt::Display for EditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

impl std::error::Error for EditError {}

/// Reference semantics of the kernel-argument ops on a list of words.
///
/// Words compare as the kernel compares arguments: `-` and `_` in the name are one
/// (`vfio-pci.ids=1` is `vfio_pci.ids=1`); values compare exactly. The ops run in order on
/// the words before a lone `--` (what follows belongs to init and stays as it is):
/// `SetKey` leaves exactly one argument with the key, `AddExact` exactly one copy of the
/// argument, removals remove every match. Then the arguments that remain are laid out: one
/// that `SetKey` wrote stands where the key first stood; any other stands where the same
/// argument stood (as it was written there); the rest follow, in the order the ops added
/// them. So applying the same ops twice gives the same list as once, and ops that change
/// nothing give back the list as it was.
pub fn apply_ops(words: &[String], ops: &[KargOp]) -> Vec<String> {
    args::apply_tracked(words, ops)
        .iter()
        .map(|item| item.text(words).to_owned())
        .collect()
}

/// The kernel-argument editors' common path: parse, apply, and either give back `text`
/// (nothing changed) or the list that `rewrite` must produce.
pub(crate) fn planned_items(
    file: &'static str,
    words: &[String],
    ops: &[KargOp],
) -> Result<Option<Vec<Item>>, EditError> {
    args::validate_ops(file, ops)?;
    let items = args::apply_tracked(words, ops);
    let changed = items.len() != words.len()
        || items
            .iter()
            .zip(words)
            .any(|(item, w)| item.text(words) != w);
    Ok(changed.then_some(items))
}

/// Checks an editor's output against the words it had to produce.
pub(crate) fn verified(
    file: &'static str,
    out: String,
    expected: &[String],
    reread: impl Fn(&str) -> Result<Vec<String>, EditError>,
) -> Result<String, EditError> {
    verified_or(out, expected, reread, || EditError::unsafe_rewrite(file))
}

/// Returns `out` when reading it back gives `expected`, else the error `mismatch` makes.
pub(crate) fn verified_or(
    out: String,
    expected: &[String],
    reread: impl Fn(&str) -> Result<Vec<String>, EditError>,
    mismatch: impl FnOnce() -> EditError,
) -> Result<String, EditError> {
    match reread(&out) {
        Ok(words) if words == expected => Ok(out),
        _ => Err(mismatch()),
    }
}

/// The 1-based line that byte `offset` of `text` is on.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
