//! Translation helpers. Every user-visible string goes through gettext.
//!
//! Translate the pattern, then fill it: `gettext_f("Group {group} is shared", &[("group", "15")])`.
//! `gettext_f` and `ngettext_f` are registered as xgettext keywords in `build-aux/po-update`.

use gettextrs::{gettext, ngettext};

/// Replaces `{name}` placeholders in an already-translated string.
pub fn fill(translated: &str, args: &[(&str, &str)]) -> String {
    let mut out = translated.to_owned();
    for (name, value) in args {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// Translates `msgid`, then fills its `{name}` placeholders.
pub fn gettext_f(msgid: &str, args: &[(&str, &str)]) -> String {
    fill(&gettext(msgid), args)
}

/// Plural form of [`gettext_f`]; `{n}` is filled with `n` as well.
pub fn ngettext_f(msgid: &str, msgid_plural: &str, n: u32, args: &[(&str, &str)]) -> String {
    let count = n.to_string();
    let mut all = vec![("n", count.as_str())];
    all.extend_from_slice(args);
    fill(&ngettext(msgid, msgid_plural, n), &all)
}

/// Sets up gettext for a binary: locale from the environment, the message catalogs from
/// `PASSTHROUGH_LOCALEDIR` (development and tests) or the build-time `localedir`.
pub fn init(localedir: &str) {
    let dir = std::env::var("PASSTHROUGH_LOCALEDIR").unwrap_or_else(|_| localedir.to_owned());
    set_locale();
    let _ = gettextrs::bindtextdomain(crate::GETTEXT_DOMAIN, dir);
    let _ = gettextrs::bind_textdomain_codeset(crate::GETTEXT_DOMAIN, "UTF-8");
    let _ = gettextrs::textdomain(crate::GETTEXT_DOMAIN);
}

#[allow(unsafe_code)]
fn set_locale() {
    // SAFETY: called once at start-up, before any other thread exists.
    unsafe {
        gettextrs::setlocale(gettextrs::LocaleCategory::LcAll, "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_replaces_named_placeholders() {
        assert_eq!(
            fill("Group {g} holds {n} devices", &[("g", "15"), ("n", "9")]),
            "Group 15 holds 9 devices"
        );
        assert_eq!(fill("{x}{x}", &[("x", "a")]), "aa");
        assert_eq!(fill("no placeholder", &[("x", "a")]), "no placeholder");
    }
}
