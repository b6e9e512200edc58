//! A JSON reader that remembers where every value is, so an editor can replace one value
//! and keep every other byte (serde_json's own tree forgets the layout, and its
//! `preserve_order` feature would reorder the keys of every other JSON the workspace prints).

/// A JSON value and its bytes `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Object(Vec<Member>),
    Array(Vec<Node>),
    Str(String),
    Other,
}

/// `"key": value`; `key_start` is the offset of the key's opening quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub key: String,
    pub key_start: usize,
    pub value: Node,
}

impl Node {
    /// The last member named `key` (the one a JSON reader keeps), if this is an object.
    pub fn member(&self, key: &str) -> Option<&Member> {
        match &self.kind {
            Kind::Object(members) => members.iter().rev().find(|m| m.key == key),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self.kind, Kind::Object(_))
    }
}

/// Parses `text`, which serde_json checks first (syntax, nesting depth at most 128).
pub(crate) fn parse(text: &str) -> Result<Node, serde_json::Error> {
    serde_json::from_str::<serde_json::Value>(text)?;
    let mut parser = Parser {
        text,
        b: text.as_bytes(),
        pos: 0,
    };
    Ok(parser.value())
}

struct Parser<'a> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> u8 {
        self.b.get(self.pos).copied().unwrap_or(0)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Node {
        self.ws();
        let start = self.pos;
        let kind = match self.peek() {
            b'{' => Kind::Object(self.object()),
            b'[' => Kind::Array(self.array()),
            b'"' => Kind::Str(self.string()),
            _ => {
                self.scalar();
                Kind::Other
            }
        };
        Node {
            start,
            end: self.pos,
            kind,
        }
    }

    fn object(&mut self) -> Vec<Member> {
        let mut members = Vec::new();
        self.pos += 1;
        loop {
            self.ws();
            match self.peek() {
                b'}' | 0 => break,
                b',' => self.pos += 1,
                _ => {
                    let key_start = self.pos;
                    let key = self.string();
                    self.ws();
                    self.pos += 1; // the colon
                    let value = self.value();
                    members.push(Member {
                        key,
                        key_start,
                        value,
                    });
                }
            }
        }
        self.pos += 1;
        members
    }

    fn array(&mut self) -> Vec<Node> {
        let mut items = Vec::new();
        self.pos += 1;
        loop {
            self.ws();
            match self.peek() {
                b']' | 0 => break,
                b',' => self.pos += 1,
                _ => items.push(self.value()),
            }
        }
        self.pos += 1;
        items
    }

    /// A string literal from its opening quote, decoded.
    fn string(&mut self) -> String {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek() {
                b'"' | 0 => break,
                b'\\' => self.pos += 2,
                _ => self.pos += 1,
            }
        }
        self.pos = (self.pos + 1).min(self.b.len());
        serde_json::from_str(&self.text[start..self.pos]).unwrap_or_default()
    }

    fn scalar(&mut self) {
        while !matches!(
            self.peek(),
            b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | 0
        ) {
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        let text = r#" {"a": [1, "x\"y"], "b": {"c": true}, "a": null} "#;
        let root = parse(text).unwrap();
        assert_eq!(root.start, 1);
        assert_eq!(root.end, text.len() - 1);
        let b = root.member("b").unwrap();
        assert_eq!(&text[b.value.start..b.value.end], r#"{"c": true}"#);
        assert_eq!(root.member("a").unwrap().value.kind, Kind::Other);
        let Kind::Object(members) = &root.kind else {
            panic!("not an object")
        };
        let Kind::Array(items) = &members[0].value.kind else {
            panic!("not an array")
        };
        assert_eq!(&text[items[0].start..items[0].end], "1");
        assert_eq!(&text[items[1].start..items[1].end], r#""x\"y""#);
        assert_eq!(items[1].kind, Kind::Str("x\"y".into()));
        assert!(parse("[[[").is_err());
    }
}
