//! The XML tree that domain XML is built and edited as: reading (with the checks that keep
//! xmltree from losing data or recursing without end), writing, and small helpers.

use xmltree::{Element, EmitterConfig, ParserConfig, XMLNode};

use super::spec::SpecError;
use crate::i18n::gettext_f;

/// Deeper nesting than this is refused before xmltree (which recurses) sees it; libvirt's
/// domain XML nests about 6 deep, its metadata a little more.
const MAX_DEPTH: usize = 256;

fn xml_error(detail: &str) -> SpecError {
    SpecError::Xml(gettext_f(
        "The virtual machine's XML cannot be read: {error}",
        &[("error", detail)],
    ))
}

/// Reads a domain XML document into a tree. Refused with a translated sentence: malformed
/// XML, nesting deeper than [`MAX_DEPTH`], attributes with a namespace prefix (xmltree keeps
/// only their local name, so writing them back would change them), a top element other
/// than `<domain>`.
pub(crate) fn parse_domain(text: &str) -> Result<Element, SpecError> {
    let config = ParserConfig::new().ignore_comments(false);
    let mut depth = 0usize;
    for event in xml::reader::EventReader::new_with_config(text.as_bytes(), config.clone()) {
        match event {
            Ok(xml::reader::XmlEvent::StartElement { attributes, .. }) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(SpecError::Xml(gettext_f(
                        "The virtual machine's XML nests elements more than {max} deep; it is not a libvirt domain.",
                        &[("max", &MAX_DEPTH.to_string())],
                    )));
                }
                if let Some(attr) = attributes.iter().find(|a| a.name.prefix.is_some()) {
                    return Err(SpecError::Xml(gettext_f(
                        "The virtual machine's XML has an attribute with a namespace prefix ({attribute}), which Passthrough cannot keep when it saves the XML.",
                        &[("attribute", &attr.name.to_string())],
                    )));
                }
            }
            Ok(xml::reader::XmlEvent::EndElement { .. }) => depth = depth.saturating_sub(1),
            Ok(_) => {}
            Err(e) => return Err(xml_error(&e.to_string())),
        }
    }
    let nodes = Element::parse_all_with_config(text.as_bytes(), config)
        .map_err(|e| xml_error(&e.to_string()))?;
    let root = nodes
        .into_iter()
        .find_map(|n| match n {
            XMLNode::Element(e) => Some(e),
            _ => None,
        })
        .ok_or_else(|| xml_error("no element"))?;
    if root.name != "domain" || root.namespace.is_some() {
        return Err(SpecError::Xml(gettext_f(
            "This XML is not a libvirt domain: its top element is <{element}>, not <domain>.",
            &[("element", &root.name)],
        )));
    }
    Ok(root)
}

/// Writes a tree as indented XML (no declaration), ending in a newline.
pub(crate) fn write(root: &Element) -> Result<String, SpecError> {
    let mut out = Vec::new();
    root.write_with_config(
        &mut out,
        EmitterConfig::new()
            .perform_indent(true)
            .indent_string("  ")
            .write_document_declaration(false)
            .pad_self_closing(false),
    )
    .map_err(|e| {
        SpecError::Xml(gettext_f(
            "The virtual machine's XML cannot be written: {error}",
            &[("error", &e.to_string())],
        ))
    })?;
    let mut text = String::from_utf8(out).map_err(|e| xml_error(&e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// A new element.
pub(crate) fn el(name: &str) -> Element {
    Element::new(name)
}

/// Building elements in one expression.
pub(crate) trait Build: Sized {
    fn attr(self, name: &str, value: impl Into<String>) -> Self;
    fn child(self, child: Element) -> Self;
    fn text(self, text: impl Into<String>) -> Self;
    fn child_opt(self, child: Option<Element>) -> Self {
        match child {
            Some(c) => self.child(c),
            None => self,
        }
    }
    fn child_if(self, cond: bool, child: impl FnOnce() -> Element) -> Self {
        if cond {
            self.child(child())
        } else {
            self
        }
    }
}

impl Build for Element {
    fn attr(mut self, name: &str, value: impl Into<String>) -> Self {
        self.attributes.insert(name.to_owned(), value.into());
        self
    }

    fn child(mut self, child: Element) -> Self {
        self.children.push(XMLNode::Element(child));
        self
    }

    fn text(mut self, text: impl Into<String>) -> Self {
        self.children.push(XMLNode::Text(text.into()));
        self
    }
}

/// The child elements of `e`.
pub(crate) fn elements(e: &Element) -> impl Iterator<Item = &Element> {
    e.children.iter().filter_map(XMLNode::as_element)
}

/// The child elements of `e` named `name` (no namespace).
pub(crate) fn named<N: AsRef<str>>(e: &Element, name: N) -> impl Iterator<Item = &Element> {
    elements(e).filter(move |c| c.name == name.as_ref() && c.namespace.is_none())
}

/// The first child element named `name` (no namespace).
pub(crate) fn first<N: AsRef<str>>(e: &Element, name: N) -> Option<&Element> {
    elements(e).find(|c| c.name == name.as_ref() && c.namespace.is_none())
}

/// The index in `children` of the first child element named `name` (no namespace).
pub(crate) fn position(e: &Element, name: &str) -> Option<usize> {
    e.children.iter().position(|n| {
        n.as_element()
            .is_some_and(|c| c.name == name && c.namespace.is_none())
    })
}

/// The first child element named `name`, mutably.
pub(crate) fn first_mut<N: AsRef<str>>(e: &mut Element, name: N) -> Option<&mut Element> {
    let i = position(e, name.as_ref())?;
    e.children[i].as_mut_element()
}

/// The first child element named `name`, created (at `at(e)`, or at the end) if missing.
pub(crate) fn ensure<N: AsRef<str>>(
    e: &mut Element,
    name: N,
    make: impl FnOnce() -> Element,
    at: impl FnOnce(&Element) -> Option<usize>,
) -> &mut Element {
    let i = match position(e, name.as_ref()) {
        Some(i) => i,
        None => {
            let i = at(e).unwrap_or(e.children.len()).min(e.children.len());
            e.children.insert(i, XMLNode::Element(make()));
            i
        }
    };
    e.children[i]
        .as_mut_element()
        .expect("the child at this index is an element")
}

/// Whether `e` has no child elements, text, comments or other nodes.
pub(crate) fn is_empty(e: &Element) -> bool {
    e.children.is_empty()
}

/// An attribute's value.
pub(crate) fn attr<N: AsRef<str>>(e: &Element, name: N) -> Option<&str> {
    e.attributes.get(name.as_ref()).map(String::as_str)
}
