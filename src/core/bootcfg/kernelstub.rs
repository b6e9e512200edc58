//! Pop!_OS's kernelstub, `/etc/kernelstub/configuration`: JSON whose `"user"` object holds
//! the `"kernel_options"` array that kernelstub writes into the boot entry. Only that
//! array's bytes change; a missing array is added, and a missing `"user"` object is made
//! from a copy of `"default"`, as kernelstub itself does when it loads the file. New text
//! is laid out as kernelstub writes it (`json.dump(…, indent=2)`).

use super::args::{self, plain_chars};
use super::json::{self, Kind, Member, Node};
use super::lines::{indent, newline};
use super::{line_of, planned_items, verified, EditError, KargOp};
use crate::i18n::gettext_f;

/// The file's standard host path.
pub const PATH: &str = "/etc/kernelstub/configuration";

const OPTIONS: &str = "kernel_options";

/// The arguments kernelstub uses: `user.kernel_options`, or `default.kernel_options` when
/// there is no `"user"` object.
pub fn kernel_args(text: &str) -> Result<Vec<String>, EditError> {
    let root = parse(text)?;
    words_of(options_node(&root)?)
}

/// Applies `ops` to `user.kernel_options`.
pub fn edit(text: &str, ops: &[KargOp]) -> Result<String, EditError> {
    let root = parse(text)?;
    let words = words_of(options_node(&root)?)?;
    let Some(items) = planned_items(PATH, &words, ops)? else {
        return Ok(text.to_owned());
    };
    let expected: Vec<String> = items.iter().map(|i| i.text(&words).to_owned()).collect();
    let nl = newline(text);
    let out = match root.member("user") {
        Some(user) => set_options(text, &user.value, &expected, nl),
        None => {
            let user = match root.member("default") {
                Some(default) => {
                    let copy = &text[default.value.start..default.value.end];
                    let node = parse(copy)?;
                    set_options(copy, &node, &expected, nl)
                }
                None => format!("{{\"{OPTIONS}\": {}}}", array(&expected, None, nl)),
            };
            insert_member(text, &root, "user", &user, nl)
        }
    };
    verified(PATH, out, &expected, kernel_args)
}

fn parse(text: &str) -> Result<Node, EditError> {
    let root = json::parse(text).map_err(|e| {
        let line = (e.line() > 0).then_some(e.line());
        let message = gettext_f(
            "The kernelstub configuration is not valid JSON: {error}",
            &[("error", &e.to_string())],
        );
        EditError::new(PATH, line, message)
    })?;
    if !root.is_object() {
        return Err(not_an_object(text, &root, "/"));
    }
    Ok(root)
}

fn not_an_object(text: &str, node: &Node, name: &str) -> EditError {
    let line = line_of(text, node.start);
    let message = gettext_f(
        "“{name}” in the kernelstub configuration must be a JSON object.",
        &[("name", name)],
    );
    EditError::new(PATH, Some(line), message)
}

/// The value kernelstub reads the options from, if any.
fn options_node(root: &Node) -> Result<Option<&Node>, EditError> {
    let Some(owner) = root.member("user").or_else(|| root.member("default")) else {
        return Ok(None);
    };
    if !owner.value.is_object() {
        return Err(EditError::new(
            PATH,
            None,
            gettext_f(
                "“{name}” in the kernelstub configuration must be a JSON object.",
                &[("name", &owner.key)],
            ),
        ));
    }
    Ok(owner.value.member(OPTIONS).map(|m| &m.value))
}

/// The arguments of a `kernel_options` value: a list of strings (or, as some vendors'
/// packages wrote it, one string), each split like the kernel does.
fn words_of(node: Option<&Node>) -> Result<Vec<String>, EditError> {
    let strings: Vec<&String> = match node.map(|n| &n.kind) {
        None => Vec::new(),
        Some(Kind::Str(s)) => vec![s],
        Some(Kind::Array(items)) => items
            .iter()
            .map(|i| match &i.kind {
                Kind::Str(s) => Ok(s),
                _ => Err(bad_options()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad_options()),
    };
    let mut words = Vec::new();
    for s in strings {
        let found = args::split_words(&plain_chars(s, 0)).map_err(|_| bad_options())?;
        words.extend(args::texts(&found));
    }
    Ok(words)
}

fn bad_options() -> EditError {
    let message = gettext_f(
        "“kernel_options” in the kernelstub configuration must be a list of kernel arguments.",
        &[],
    );
    EditError::new(PATH, None, message)
}

/// `text` with the object `obj` holding `kernel_options` = `words`.
fn set_options(text: &str, obj: &Node, words: &[String], nl: &str) -> String {
    let Some(member) = obj.member(OPTIONS) else {
        let layout = member_indent(text, obj).map(|i| (i, unit(text, obj)));
        let value = array(words, layout.as_ref().map(|(i, u)| (i.as_str(), *u)), nl);
        return insert_member(text, obj, OPTIONS, &value, nl);
    };
    let value = &member.value;
    let inline_array = matches!(&value.kind, Kind::Array(items) if !items.is_empty())
        && !text[value.start..value.end].contains('\n');
    let key_indent = key_line_indent(text, member);
    let layout = match key_indent {
        Some(i) if !inline_array && spans_lines(text, obj) => Some((i, unit(text, obj))),
        _ => None,
    };
    let new = array(words, layout.as_ref().map(|(i, u)| (i.as_str(), *u)), nl);
    format!("{}{}{}", &text[..value.start], new, &text[value.end..])
}

/// A JSON array of strings: one item a line under `layout` (the key's indent and the
/// indent unit), else on one line.
fn array(words: &[String], layout: Option<(&str, &str)>, nl: &str) -> String {
    let items: Vec<String> = words
        .iter()
        .map(|w| serde_json::to_string(w).unwrap_or_default())
        .collect();
    match layout {
        _ if items.is_empty() => "[]".to_owned(),
        None => format!("[{}]", items.join(", ")),
        Some((key, unit)) => {
            let sep = format!(",{nl}{key}{unit}");
            format!("[{nl}{key}{unit}{}{nl}{key}]", items.join(&sep))
        }
    }
}

/// `text` with `"key": value` added as the last member of the object `obj`.
fn insert_member(text: &str, obj: &Node, key: &str, value: &str, nl: &str) -> String {
    let Kind::Object(members) = &obj.kind else {
        return text.to_owned();
    };
    let (at, insert) = match (members.last(), member_indent(text, obj)) {
        (Some(last), Some(ind)) => (last.value.end, format!(",{nl}{ind}\"{key}\": {value}")),
        (Some(last), None) => (last.value.end, format!(", \"{key}\": {value}")),
        (None, _) if spans_lines(text, obj) || text.contains('\n') => {
            let outer = indent(line_text(text, obj.start)).to_owned();
            let body = format!("{{{nl}{outer}  \"{key}\": {value}{nl}{outer}}}");
            return splice_node(text, obj, &body);
        }
        (None, _) => return splice_node(text, obj, &format!("{{\"{key}\": {value}}}")),
    };
    format!("{}{}{}", &text[..at], insert, &text[at..])
}

fn splice_node(text: &str, node: &Node, new: &str) -> String {
    format!("{}{}{}", &text[..node.start], new, &text[node.end..])
}

/// The indent of the object's members when they stand one a line.
fn member_indent(text: &str, obj: &Node) -> Option<String> {
    let Kind::Object(members) = &obj.kind else {
        return None;
    };
    let first = members.first()?;
    key_line_indent(text, first).filter(|_| spans_lines(text, obj))
}

/// The indent of a member's line, if the key is the first thing on it.
fn key_line_indent(text: &str, member: &Member) -> Option<String> {
    let line_start = text[..member.key_start].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..member.key_start];
    before
        .chars()
        .all(|c| c == ' ' || c == '\t')
        .then(|| before.to_owned())
}

/// The text from the start of the line holding `offset` to the end of the text.
fn line_text(text: &str, offset: usize) -> &str {
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    &text[start..]
}

/// The indent unit of an object's members relative to its own line (two spaces by default).
fn unit(text: &str, obj: &Node) -> &'static str {
    let outer = indent(line_text(text, obj.start)).len();
    match member_indent(text, obj).map(|i| i.len().saturating_sub(outer)) {
        Some(4) => "    ",
        Some(1) => " ",
        _ => "  ",
    }
}

fn spans_lines(text: &str, node: &Node) -> bool {
    text[node.start..node.end].contains('\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_missing() {
        let ops = [KargOp::AddExact {
            arg: "iommu=pt".into(),
        }];
        assert_eq!(
            edit(r#"{"user": {"kernel_options": ["quiet"]}}"#, &ops).unwrap(),
            r#"{"user": {"kernel_options": ["quiet", "iommu=pt"]}}"#
        );
        assert_eq!(
            edit(r#"{"user": {"esp_path": "/boot/efi"}}"#, &ops).unwrap(),
            r#"{"user": {"esp_path": "/boot/efi", "kernel_options": ["iommu=pt"]}}"#
        );
        assert_eq!(
            edit("{}", &ops).unwrap(),
            r#"{"user": {"kernel_options": ["iommu=pt"]}}"#
        );
        assert!(edit("[]", &ops).is_err());
        assert!(edit(r#"{"user": {"kernel_options": 3}}"#, &ops).is_err());
        assert_eq!(
            kernel_args(r#"{"user": {"kernel_options": "quiet splash"}}"#).unwrap(),
            ["quiet", "splash"]
        );
    }
}
