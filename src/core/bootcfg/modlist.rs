//! What the module-list editors (mkinitcpio, initramfs-tools, booster) share: which names
//! they may write, and the list an edit must produce.

use super::EditError;
use crate::i18n::gettext_f;

/// Refuses names that are not kernel module names (letters, digits, `_` and `-`; with
/// `optional_mark`, a final `?` as mkinitcpio allows).
pub(crate) fn validate(
    file: &'static str,
    add: &[&str],
    optional_mark: bool,
) -> Result<(), EditError> {
    for name in add {
        let base = match name.strip_suffix('?') {
            Some(base) if optional_mark => base,
            _ => name,
        };
        let valid = !base.is_empty()
            && base
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            let message = gettext_f(
                "“{name}” is not a kernel module name Passthrough can write.",
                &[("name", name)],
            );
            return Err(EditError::new(file, None, message));
        }
    }
    Ok(())
}

/// Whether an edit removes `name`: it is to be removed and not also to be added.
pub(crate) fn removes(name: &str, add: &[&str], remove: &[&str]) -> bool {
    remove.contains(&name) && !add.contains(&name)
}

/// The names of `add` that `kept` lacks, each once, in order.
pub(crate) fn missing(kept: &[String], add: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in add {
        if !kept.iter().any(|k| k == name) && !out.iter().any(|o| o == name) {
            out.push((*name).to_owned());
        }
    }
    out
}

/// The list an edit must leave: `current` without what it removes, then what is missing.
pub(crate) fn expected(current: &[String], add: &[&str], remove: &[&str]) -> Vec<String> {
    let mut kept: Vec<String> = current
        .iter()
        .filter(|m| !removes(m, add, remove))
        .cloned()
        .collect();
    let new = missing(&kept, add);
    kept.extend(new);
    kept
}

/// Checks an editor's output against the list it had to produce.
pub(crate) fn verified(
    file: &'static str,
    out: String,
    expected: &[String],
    reread: impl Fn(&str) -> Result<Vec<String>, EditError>,
) -> Result<String, EditError> {
    super::verified_or(out, expected, reread, || {
        EditError::new(
            file,
            None,
            gettext_f(
                "Passthrough could not rewrite the module list safely; the file was left as it is.",
                &[],
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_wins_over_remove() {
        let current = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(
            expected(&current, &["b", "c", "c"], &["a", "b"]),
            ["b", "c"]
        );
        assert!(validate("f", &["vfio_pci", "nvidia?"], true).is_ok());
        assert!(validate("f", &["nvidia?"], false).is_err());
        assert!(validate("f", &["a b"], true).is_err());
    }
}
