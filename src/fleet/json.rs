//! A strict JSON reader that keeps where every value came from.
//!
//! `serde_json` forgets positions and silently keeps the last of two equal keys; phoenix
//! needs both facts to report problems at `file:line:col`. This module parses RFC 8259
//! JSON into a [`Value`] tree whose every value and key carries its byte [`Span`], and
//! reports duplicate keys instead of dropping them. It owns nothing else: no schema, no
//! meaning of fields.

use std::fmt;

/// Byte range in the source text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(s: Span) -> Self {
        (s.start, s.len()).into()
    }
}

/// An object member: the key with its own span, and the value.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub key: String,
    pub key_span: Span,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Value>),
    /// Members in file order. Keys are unique: duplicates are reported and dropped.
    Object(Vec<Member>),
}

/// A JSON value and the span of its text.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub span: Span,
    pub kind: Kind,
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.member(key).map(|m| &m.value)
    }

    pub fn member(&self, key: &str) -> Option<&Member> {
        match &self.kind {
            Kind::Object(members) => members.iter().find(|m| m.key == key),
            _ => None,
        }
    }

    pub fn members(&self) -> &[Member] {
        match &self.kind {
            Kind::Object(members) => members,
            _ => &[],
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.kind {
            Kind::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match &self.kind {
            Kind::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self.kind, Kind::Object(_))
    }

    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "boolean",
            Kind::Number(_) => "number",
            Kind::String(_) => "string",
            Kind::Array(_) => "array",
            Kind::Object(_) => "object",
        }
    }

    /// The value without positions, for schema validation and hashing.
    pub fn to_plain(&self) -> serde_json::Value {
        match &self.kind {
            Kind::Null => serde_json::Value::Null,
            Kind::Bool(b) => serde_json::Value::Bool(*b),
            Kind::Number(n) => serde_json::Value::Number(n.clone()),
            Kind::String(s) => serde_json::Value::String(s.clone()),
            Kind::Array(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_plain).collect())
            }
            Kind::Object(members) => serde_json::Value::Object(
                members
                    .iter()
                    .map(|m| (m.key.clone(), m.value.to_plain()))
                    .collect(),
            ),
        }
    }

    /// The span of the value at a JSON pointer (`/lxc_configs/900/name`), or of the deepest
    /// existing ancestor when the pointer leads nowhere. With `key` set, the span of the
    /// member's key rather than its value.
    pub fn locate(&self, pointer: &str, key: bool) -> Span {
        let mut node = self;
        let mut key_span = None;
        for raw in pointer.split('/').skip(1) {
            let token = raw.replace("~1", "/").replace("~0", "~");
            let next = match &node.kind {
                Kind::Object(members) => members
                    .iter()
                    .find(|m| m.key == token)
                    .map(|m| (m.key_span, &m.value)),
                Kind::Array(items) => token
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i))
                    .map(|v| (v.span, v)),
                _ => None,
            };
            match next {
                Some((k, v)) => {
                    key_span = Some(k);
                    node = v;
                }
                None => return node.span,
            }
        }
        match key_span {
            Some(k) if key => k,
            _ => node.span,
        }
    }
}

/// What went wrong while reading JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A key that appears twice in one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateKey {
    pub key: String,
    /// JSON pointer of the object holding both keys.
    pub object_pointer: String,
    pub first: Span,
    pub second: Span,
}

/// Result of parsing: the tree (first occurrence of a duplicated key wins) and every
/// duplicate found.
#[derive(Debug)]
pub struct Parsed {
    pub value: Value,
    pub duplicates: Vec<DuplicateKey>,
}

/// Objects with fewer members than this find duplicate keys without a hash index.
const SMALL_OBJECT: usize = 16;

/// Deep enough for any config; shallow enough never to exhaust the stack.
const MAX_DEPTH: usize = 128;

pub fn parse(text: &str) -> Result<Parsed, SyntaxError> {
    let mut p = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        duplicates: Vec::new(),
        path: String::new(),
    };
    p.skip_ws();
    if p.pos == p.bytes.len() {
        return Err(p.error_at(p.pos, 0, "the file holds no JSON value"));
    }
    let value = p.value(0)?;
    p.skip_ws();
    if p.pos < p.bytes.len() {
        return Err(p.error_at(p.pos, 1, "unexpected text after the end of the JSON value"));
    }
    Ok(Parsed {
        value,
        duplicates: p.duplicates,
    })
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    duplicates: Vec<DuplicateKey>,
    /// JSON pointer of the value being parsed.
    path: String,
}

impl Parser<'_> {
    fn error_at(&self, pos: usize, len: usize, message: impl Into<String>) -> SyntaxError {
        let end = (pos + len).min(self.bytes.len());
        SyntaxError {
            span: Span::new(pos, end),
            message: message.into(),
        }
    }

    fn unexpected(&self, expected: &str) -> SyntaxError {
        match self.text[self.pos..].chars().next() {
            None => self.error_at(
                self.pos,
                0,
                format!("unexpected end of file, expected {expected}"),
            ),
            Some(c) => self.error_at(
                self.pos,
                c.len_utf8(),
                format!("unexpected {}, expected {expected}", describe(c)),
            ),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.error_at(
                self.pos,
                1,
                format!("nesting deeper than {MAX_DEPTH} levels"),
            ));
        }
        let start = self.pos;
        let kind = match self.bytes.get(self.pos) {
            Some(b'{') => self.object(depth)?,
            Some(b'[') => self.array(depth)?,
            Some(b'"') => Kind::String(self.string()?),
            Some(b't') => self.literal("true", Kind::Bool(true))?,
            Some(b'f') => self.literal("false", Kind::Bool(false))?,
            Some(b'n') => self.literal("null", Kind::Null)?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err(self.unexpected("a JSON value")),
        };
        Ok(Value {
            span: Span::new(start, self.pos),
            kind,
        })
    }

    fn literal(&mut self, word: &str, kind: Kind) -> Result<Kind, SyntaxError> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(kind)
        } else {
            let end = self.text[self.pos..]
                .find(|c: char| !c.is_ascii_alphanumeric())
                .map_or(self.bytes.len(), |i| self.pos + i);
            Err(self.error_at(
                self.pos,
                (end - self.pos).max(1),
                format!(
                    "`{}` is not a JSON value (strings need double quotes)",
                    &self.text[self.pos..end]
                ),
            ))
        }
    }

    fn number(&mut self) -> Result<Kind, SyntaxError> {
        let start = self.pos;
        let b = self.bytes;
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while matches!(b.get(i), Some(b'0'..=b'9')) {
                    i += 1;
                }
            }
            _ => {
                self.pos = i;
                return Err(self.unexpected("a digit"));
            }
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !matches!(b.get(i), Some(b'0'..=b'9')) {
                self.pos = i;
                return Err(self.unexpected("a digit after the decimal point"));
            }
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !matches!(b.get(i), Some(b'0'..=b'9')) {
                self.pos = i;
                return Err(self.unexpected("a digit in the exponent"));
            }
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'0'..=b'9')) {
            return Err(self.error_at(start, i + 1 - start, "numbers must not have leading zeros"));
        }
        self.pos = i;
        let text = &self.text[start..i];
        text.parse::<serde_json::Number>()
            .map(|n| Kind::Number(integral(n)))
            .map_err(|_| {
                self.error_at(start, i - start, format!("number `{text}` is out of range"))
            })
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let open = self.pos;
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while let Some(&c) = self.bytes.get(self.pos) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[run_start..self.pos]);
            match self.bytes.get(self.pos) {
                None => {
                    return Err(self.error_at(open, 1, "string is never closed (missing `\"`)"))
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => {
                    return Err(self.error_at(
                        self.pos,
                        1,
                        "control character inside a string (write it as an escape such as \\n)",
                    ))
                }
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), SyntaxError> {
        let c = match self.bytes.get(self.pos) {
            Some(&c) => c,
            None => return Err(self.unexpected("an escape character")),
        };
        self.pos += 1;
        match c {
            b'"' => out.push('"'),
            b'\\' => out.push('\\'),
            b'/' => out.push('/'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'u' => {
                let start = self.pos - 2;
                let hi = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    if self.bytes.get(self.pos) == Some(&b'\\')
                        && self.bytes.get(self.pos + 1) == Some(&b'u')
                    {
                        self.pos += 2;
                        let lo = self.hex4()?;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return Err(self.error_at(
                                start,
                                self.pos - start,
                                "invalid surrogate pair",
                            ));
                        }
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    } else {
                        return Err(self.error_at(start, 6, "unpaired surrogate in \\u escape"));
                    }
                } else {
                    hi
                };
                match char::from_u32(code) {
                    Some(ch) => out.push(ch),
                    None => {
                        return Err(self.error_at(start, self.pos - start, "invalid \\u escape"))
                    }
                }
            }
            _ => {
                self.pos -= 1;
                return Err(self.error_at(
                    self.pos - 1,
                    2,
                    "invalid escape (allowed: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
                ));
            }
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let digits = self.text.get(self.pos..self.pos + 4).unwrap_or("");
        match u32::from_str_radix(digits, 16) {
            Ok(v) if digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_hexdigit()) => {
                self.pos += 4;
                Ok(v)
            }
            _ => Err(self.error_at(
                self.pos,
                4.min(self.bytes.len() - self.pos),
                "expected 4 hex digits after \\u",
            )),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Kind, SyntaxError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(Kind::Array(items));
        }
        loop {
            self.skip_ws();
            let saved = self.path.len();
            self.path.push('/');
            self.path.push_str(&items.len().to_string());
            items.push(self.value(depth + 1)?);
            self.path.truncate(saved);
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.bytes.get(self.pos) == Some(&b']') {
                        return Err(self.error_at(self.pos - 1, 1, "trailing comma before `]`"));
                    }
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Kind::Array(items));
                }
                _ => return Err(self.unexpected("`,` or `]`")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Kind, SyntaxError> {
        self.pos += 1;
        let mut members: Vec<Member> = Vec::new();
        // Index of keys, built once an object is large (the fleet map can hold thousands);
        // a small one is searched directly, which costs less than hashing.
        let mut index: Option<std::collections::HashMap<String, usize>> = None;
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Kind::Object(members));
        }
        loop {
            self.skip_ws();
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err(self.unexpected("a key in double quotes"));
            }
            let key_start = self.pos;
            let key = self.string()?;
            let key_span = Span::new(key_start, self.pos);
            self.skip_ws();
            if self.bytes.get(self.pos) != Some(&b':') {
                return Err(self.unexpected("`:` after the key"));
            }
            self.pos += 1;
            self.skip_ws();
            let saved = self.path.len();
            self.path.push('/');
            for c in key.chars() {
                match c {
                    '~' => self.path.push_str("~0"),
                    '/' => self.path.push_str("~1"),
                    c => self.path.push(c),
                }
            }
            let value = self.value(depth + 1)?;
            self.path.truncate(saved);
            let first = if members.len() < SMALL_OBJECT {
                members.iter().position(|m| m.key == key)
            } else {
                index
                    .get_or_insert_with(|| {
                        members
                            .iter()
                            .enumerate()
                            .map(|(i, m)| (m.key.clone(), i))
                            .collect()
                    })
                    .get(&key)
                    .copied()
            };
            match first {
                Some(first) => self.duplicates.push(DuplicateKey {
                    key,
                    object_pointer: self.path.clone(),
                    first: members[first].key_span,
                    second: key_span,
                }),
                None => {
                    if let Some(index) = index.as_mut() {
                        index.insert(key.clone(), members.len());
                    }
                    members.push(Member {
                        key,
                        key_span,
                        value,
                    });
                }
            }
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.bytes.get(self.pos) == Some(&b'}') {
                        return Err(self.error_at(self.pos - 1, 1, "trailing comma before `}`"));
                    }
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Kind::Object(members));
                }
                _ => return Err(self.unexpected("`,` or `}`")),
            }
        }
    }
}

/// `2048.0` and `2.048e3` are the integer 2048 (as JSON Schema's `integer` says): stored as
/// an integer so that typed fields read them and hashes do not depend on the spelling.
fn integral(n: serde_json::Number) -> serde_json::Number {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => {
            serde_json::Number::from(f as i64)
        }
        _ => n,
    }
}

fn describe(c: char) -> String {
    match c {
        '\'' => "`'` (JSON strings use double quotes)".to_string(),
        '/' => "`/` (JSON has no comments)".to_string(),
        '#' => "`#` (JSON has no comments)".to_string(),
        c if c.is_control() => format!("control character U+{:04X}", c as u32),
        c => format!("`{c}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_values_and_keys() {
        let text = r#"{"a": {"b": [1, "x"]}}"#;
        let v = parse(text).unwrap().value;
        let s = v.locate("/a/b/1", false);
        assert_eq!(&text[s.start..s.end], "\"x\"");
        let k = v.locate("/a/b", true);
        assert_eq!(&text[k.start..k.end], "\"b\"");
        // a missing member resolves to its nearest ancestor
        let m = v.locate("/a/zzz", false);
        assert_eq!(&text[m.start..m.end], r#"{"b": [1, "x"]}"#);
    }

    #[test]
    fn duplicate_keys_are_reported_first_one_kept() {
        let p = parse(r#"{"a": 1, "b": {"c": 1, "c": 2}, "a": 3}"#).unwrap();
        assert_eq!(p.duplicates.len(), 2);
        assert_eq!(p.duplicates[0].key, "c");
        assert_eq!(p.duplicates[0].object_pointer, "/b");
        assert_eq!(p.duplicates[1].key, "a");
        assert_eq!(p.duplicates[1].object_pointer, "");
        assert_eq!(p.value.get("a").unwrap().as_u64(), Some(1));
    }

    #[test]
    fn rejects_what_json_does_not_allow() {
        for bad in [
            "",
            "{",
            "{\"a\":1,}",
            "[1,]",
            "{'a':1}",
            "// c\n{}",
            "01",
            "1.",
            "\"\\x\"",
            "tru",
            "{\"a\" 1}",
            "[1 2]",
            "\"\u{1}\"",
            "{} {}",
            "\"\\ud800\"",
            "-",
            "1e",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn reads_what_json_allows() {
        let p = parse(r#" {"s": "a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00", "n": [-1, 1.5e3, 10], "t": true, "f": false, "z": null} "#).unwrap();
        assert_eq!(
            p.value.to_plain(),
            serde_json::json!({"s": "a\"\\/\u{8}\u{c}\n\r\té😀", "n": [-1, 1500, 10], "t": true, "f": false, "z": null})
        );
    }

    #[test]
    fn duplicates_are_found_in_small_and_large_objects() {
        let mut text = String::from("{");
        for i in 0..40 {
            text.push_str(&format!("\"k{i}\": {i}, "));
        }
        text.push_str("\"k3\": 0, \"k39\": 0, \"a/b~\": {\"x\": 1, \"x\": 2}}");
        let p = parse(&text).unwrap();
        let dups: Vec<(&str, &str)> = p
            .duplicates
            .iter()
            .map(|d| (d.key.as_str(), d.object_pointer.as_str()))
            .collect();
        assert_eq!(dups, [("k3", ""), ("k39", ""), ("x", "/a~1b~0")]);
        assert_eq!(p.value.get("k3").unwrap().as_u64(), Some(3));
        assert_eq!(p.value.members().len(), 41);
    }

    #[test]
    fn integral_numbers_are_integers_whatever_their_spelling() {
        let p = parse(r#"[2048, 2048.0, 2.048e3, 204800e-2, -0.0, 1.5, 1e300]"#).unwrap();
        let plain = p.value.to_plain();
        for i in 0..4 {
            assert_eq!(plain[i].as_u64(), Some(2048), "{i}");
        }
        assert_eq!(plain[4].as_i64(), Some(0));
        assert_eq!(plain[5].as_f64(), Some(1.5));
        assert!(plain[6].is_f64());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "[".repeat(100_000);
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("nesting deeper"));
    }
}
