//! The Proxmox VE container config file, `/etc/pve/nodes/<node>/lxc/<vmid>.conf`, read
//! and written **losslessly**: [`ConfFile::parse`] keeps every line as it was, so
//! `ConfFile::parse(t)?.to_text() == t` byte for byte, and an edit touches only the lines
//! it is about. New lines go where Proxmox's own writer would put them, so a file built
//! from [`ConfFile::new`] is exactly what Proxmox writes. This module owns the file
//! format only; the values inside (`net0: name=eth0,...`, sizes) are
//! [`props`](super::props)'.
//!
//! The format, as `write_pct_config` writes it (pve-container src/PVE/LXC/Config.pm):
//!
//! | part | lines |
//! |---|---|
//! | description | `#` + `encode_text(line)` per line of the description, at the top |
//! | keys | `key: value`, sorted by key (byte order) |
//! | raw LXC keys | `lxc.environment.runtime: ..` first, then the other `lxc.key: value` in stored order |
//! | pending changes | a blank line, `[pve:pending]`, then description / keys (with `delete: a,b`) / raw keys as above |
//! | snapshots | per snapshot, sorted by name: a blank line, `[name]`, then description / keys (`parent`, `snaptime`, ...) / raw keys |
//!
//! Reading follows `parse_pct_config`: blank (whitespace-only) lines are skipped; a `#`
//! line anywhere in a section is part of that section's description; raw keys read as
//! `lxc.key: value` or `lxc.key = value`; for a repeated key the last line wins; values
//! lose surrounding whitespace. Proxmox re-writes the whole file canonically whenever it
//! changes anything ([`ConfFile::to_pve_text`] shows that form).
//!
//! Decisions beyond Proxmox's own behaviour:
//! - A line that Proxmox could not parse at all is a [`ConfError`] (Proxmox warns and drops
//!   it); so is a section header that repeats (Proxmox keeps the last one).
//! - Which `lxc.*` keys Proxmox accepts (`is_valid_lxc_conf_key`) is not checked: every
//!   syntactically valid raw line is kept.
//! - CRLF files round-trip byte for byte; a CR before the LF is ignored in values (as in
//!   Proxmox) and in description lines (where Proxmox would keep it as `%0D`). Lines added
//!   by an edit end in LF only, as Proxmox writes them.

use std::collections::BTreeMap;

use thiserror::Error;

use super::props::{MountKind, MountPoint};

/// A config file that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {message}")]
pub struct ConfError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

/// An edit that would produce a line Proxmox could not read back as meant.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EditError {
    #[error("invalid config key '{0}'")]
    InvalidKey(String),
    // The text of pve-container src/PVE/LXC/Config.pm write_pct_config.
    #[error("detected invalid newline inside property '{0}'")]
    Newline(String),
    #[error("value '{value}' of '{key}' would not read back as written")]
    Unreadable { key: String, value: String },
    #[error("invalid snapshot name '{0}'")]
    InvalidSnapshotName(String),
}

/// The key under which Proxmox keeps container environment variables; written before the
/// other raw keys.
const ENV_KEY: &str = "lxc.environment.runtime";

// ---------------------------------------------------------------------------------
// Text encoding of descriptions
// ---------------------------------------------------------------------------------

/// Proxmox's `encode_text`: the UTF-8 bytes of `text`, with every byte outside
/// `0x20..=0x7e`, and `%` and `:`, written `%XX` (upper-case hex). Used for the `#`
/// description lines and by `pct config` for the `description:` value.
// pve-common src/PVE/ParseUtils.pm encode_text ($unsafe = "^\x20-\x24\x26-\x39\x3b-\x7e")
pub fn encode_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            0x20..=0x24 | 0x26..=0x39 | 0x3b..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Proxmox's `decode_text`: every `%XX` (either case) becomes its byte, then the bytes
/// are read as UTF-8 (invalid sequences become U+FFFD). A `%` not followed by two hex
/// digits stays as it is.
// pve-common src/PVE/ParseUtils.pm decode_text (uri_unescape, Encode::decode utf8)
pub fn decode_text(data: &str) -> String {
    let bytes = data.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Perl's `split(/\n/, $text)`: trailing empty fields dropped, so a final newline (or
/// several) writes no `#` line.
fn description_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    while lines.last() == Some(&"") {
        lines.pop();
    }
    lines
}

// ---------------------------------------------------------------------------------
// Lines
// ---------------------------------------------------------------------------------

/// `\s` as Perl matches it on the raw bytes of the file.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

fn trim(s: &str) -> &str {
    s.trim_matches(is_space)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Whitespace only; skipped by Proxmox.
    Blank,
    /// `[pve:pending]` or `[name]`.
    Header,
    /// `#...`: one line of the section's description, encoded.
    Comment,
    /// `description: <encoded>`, an old spelling of the description Proxmox still reads.
    DescriptionKey(String),
    Key(String, String),
    Lxc(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    /// Without the `\n` (a CRLF file keeps its `\r` here).
    text: String,
    /// Whether a `\n` followed it in the source; only a file's last line may lack one.
    newline: bool,
    kind: Kind,
}

impl Line {
    fn blank() -> Line {
        Line {
            text: String::new(),
            newline: true,
            kind: Kind::Blank,
        }
    }

    fn header(text: String) -> Line {
        Line {
            text,
            newline: true,
            kind: Kind::Header,
        }
    }

    /// A new line: classified exactly as the parser would read it.
    fn new(text: String) -> Line {
        let kind = classify(&text).unwrap_or(Kind::Blank);
        Line {
            text,
            newline: true,
            kind,
        }
    }

    fn comment(text: &str) -> Line {
        Line {
            text: format!("#{}", encode_text(text)),
            newline: true,
            kind: Kind::Comment,
        }
    }

    /// The encoded description text of a `#` line.
    fn comment_text(&self) -> &str {
        let t = self.text.strip_prefix('#').unwrap_or(&self.text);
        t.strip_suffix('\r').unwrap_or(t)
    }
}

enum Header {
    Pending,
    Snapshot(String),
}

/// `^\[pve:pending\]\s*$` and `^\[([a-z][a-z0-9_\-]+)\]\s*$`, both case-insensitive.
// pve-container src/PVE/LXC/Config.pm parse_pct_config
fn parse_header(text: &str) -> Option<Header> {
    let rest = text.strip_prefix('[')?;
    let (inner, after) = rest.split_once(']')?;
    if !after.chars().all(is_space) {
        return None;
    }
    if inner.eq_ignore_ascii_case("pve:pending") {
        Some(Header::Pending)
    } else if is_section_name(inner) {
        Some(Header::Snapshot(inner.to_string()))
    } else {
        None
    }
}

/// `[a-z][a-z0-9_\-]+`, any case: the section-header name (also pve-common's
/// `pve-configid`, the snapshot-name format).
fn is_section_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && name.len() >= 2
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What a (non-header) line is, in the order `parse_pct_config` tries its patterns;
/// `None` for a line it could not parse.
// pve-container src/PVE/LXC/Config.pm parse_pct_config
fn classify(text: &str) -> Option<Kind> {
    if text.chars().all(is_space) {
        return Some(Kind::Blank);
    }
    if text.starts_with('#') {
        return Some(Kind::Comment);
    }
    if let Some((k, v)) = parse_lxc(text) {
        return Some(Kind::Lxc(k.to_string(), v.to_string()));
    }
    // ^(description):\s*(.*\S)\s*$
    if let Some(rest) = text.strip_prefix("description:") {
        if !trim(rest).is_empty() {
            return Some(Kind::DescriptionKey(trim(rest).to_string()));
        }
    }
    // snapstate:\s*(prepare|delete)\s*$ -- not anchored at the start in Proxmox.
    if let Some(state) = find_snapstate(text) {
        return Some(Kind::Key("snapstate".into(), state.into()));
    }
    // ^delete:\s*(.*\S)\s*$
    if let Some(rest) = text.strip_prefix("delete:") {
        if !trim(rest).is_empty() {
            return Some(Kind::Key("delete".into(), trim(rest).to_string()));
        }
    }
    parse_key(text).map(|(k, v)| Kind::Key(k.to_string(), v.to_string()))
}

/// `^(lxc\.[a-z0-9_\-\.]+)(:|\s*=)\s*(.*?)\s*$`
fn parse_lxc(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("lxc.")?;
    let n = rest
        .bytes()
        .take_while(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
        .count();
    if n == 0 {
        return None;
    }
    let key = &text[..4 + n];
    let after = &rest[n..];
    let value = match after.strip_prefix(':') {
        Some(v) => v,
        None => after.trim_start_matches(is_space).strip_prefix('=')?,
    };
    Some((key, trim(value)))
}

fn find_snapstate(text: &str) -> Option<&'static str> {
    const TAG: &str = "snapstate:";
    let mut from = 0;
    while let Some(pos) = text[from..].find(TAG) {
        match trim(&text[from + pos + TAG.len()..]) {
            "prepare" => return Some("prepare"),
            "delete" => return Some("delete"),
            _ => from += pos + 1,
        }
    }
    None
}

/// `^([a-z][a-z_]*\d*):\s*(.+?)\s*$`
fn parse_key(text: &str) -> Option<(&str, &str)> {
    let end = key_name_len(text);
    if end == 0 {
        return None;
    }
    let rest = text[end..].strip_prefix(':')?;
    if rest.is_empty() {
        return None;
    }
    let value = trim(rest);
    // `(.+?)` needs one character: of an all-blank value Perl keeps the last one.
    let value = if value.is_empty() {
        &rest[rest.len() - 1..]
    } else {
        value
    };
    Some((&text[..end], value))
}

/// Length of the `[a-z][a-z_]*\d*` prefix of `text`.
fn key_name_len(text: &str) -> usize {
    let b = text.as_bytes();
    if b.first().is_none_or(|c| !c.is_ascii_lowercase()) {
        return 0;
    }
    let mut i = 1;
    while i < b.len() && (b[i].is_ascii_lowercase() || b[i] == b'_') {
        i += 1;
    }
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

fn is_key_name(key: &str) -> bool {
    !key.is_empty() && key_name_len(key) == key.len()
}

// ---------------------------------------------------------------------------------
// Section
// ---------------------------------------------------------------------------------

/// One section of the file: the main one, `[pve:pending]`, or a snapshot. It holds its
/// lines (not its `[header]`): description `#` lines, `key: value` lines, raw `lxc.*`
/// lines and blank lines, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    lines: Vec<Line>,
}

impl Section {
    pub fn new() -> Section {
        Section::default()
    }

    /// A normal key's value (the last line wins, as in Proxmox). Not for `lxc.*` keys
    /// ([`Section::lxc`]) nor the description ([`Section::description`]).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines.iter().rev().find_map(|l| match &l.kind {
            Kind::Key(k, v) if k == key => Some(v.as_str()),
            _ => None,
        })
    }

    /// Sets a key, as [`Section::try_set`].
    ///
    /// # Panics
    /// When `try_set` fails: a key that is not `[a-z][a-z_]*\d*`, or a value Proxmox could
    /// not read back (empty, a line break, surrounding whitespace). Use `try_set` for
    /// values that come from users.
    #[track_caller]
    pub fn set(&mut self, key: &str, value: &str) {
        if let Err(e) = self.try_set(key, value) {
            panic!("Section::set({key:?}, {value:?}): {e}");
        }
    }

    /// Sets a key. An existing line is replaced in place (keeping every other byte; any
    /// earlier duplicates of the key go). A new key goes where `write_pct_config` would
    /// put it: before the first key that sorts after it, else after the last key, else
    /// before the raw `lxc.*` lines. `description` is the same as
    /// [`Section::set_description`].
    pub fn try_set(&mut self, key: &str, value: &str) -> Result<(), EditError> {
        if key == "description" {
            self.set_description(value);
            return Ok(());
        }
        if !is_key_name(key) {
            return Err(EditError::InvalidKey(key.to_string()));
        }
        // pve-container src/PVE/LXC/Config.pm write_pct_config dies on a newline;
        // check_type refuses \r as well.
        if value.contains(['\n', '\r']) {
            return Err(EditError::Newline(key.to_string()));
        }
        let line = Line::new(format!("{key}: {value}"));
        if line.kind != Kind::Key(key.to_string(), value.to_string()) {
            return Err(EditError::Unreadable {
                key: key.to_string(),
                value: value.to_string(),
            });
        }
        let found: Vec<usize> = self.key_lines(key).collect();
        match found.split_last() {
            Some((&last, earlier)) => {
                let newline = self.lines[last].newline;
                self.lines[last] = Line { newline, ..line };
                for &i in earlier.iter().rev() {
                    self.lines.remove(i);
                }
            }
            None => {
                let at = self.key_insert_pos(key);
                self.lines.insert(at, line);
            }
        }
        Ok(())
    }

    /// Removes every line of a key; its value if it had one. `description` removes the
    /// description.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        if key == "description" {
            let old = self.description_raw();
            self.set_description("");
            return old.map(|raw| self.description_of(Some(&raw)));
        }
        let old = self.get(key).map(str::to_string);
        self.lines
            .retain(|l| !matches!(&l.kind, Kind::Key(k, _) if k == key));
        old
    }

    /// The normal keys with their values, in file order (a repeated key once, where it
    /// last appears: the line that counts).
    pub fn keys(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match &l.kind {
                Kind::Key(k, v) if self.key_lines(k).last() == Some(i) => {
                    Some((k.as_str(), v.as_str()))
                }
                _ => None,
            })
    }

    /// The description: the section's `#` lines decoded, joined with `\n`; `""` if none.
    /// (Proxmox's own value carries a `\n` after every line; see
    /// [`Section::description_raw`].)
    pub fn description(&self) -> String {
        self.description_of(self.description_raw().as_deref())
    }

    fn description_of(&self, raw: Option<&str>) -> String {
        let raw = raw.unwrap_or("");
        raw.strip_suffix('\n').unwrap_or(raw).to_string()
    }

    /// The description exactly as Proxmox holds it after reading the file: each `#` line
    /// decoded plus `\n` (an old `description:` line adds its decoded value without one);
    /// `None` if there is none.
    // pve-container src/PVE/LXC/Config.pm parse_pct_config ($descr .= decode_text($1) . "\n")
    pub fn description_raw(&self) -> Option<String> {
        let mut raw = String::new();
        for l in &self.lines {
            match &l.kind {
                Kind::Comment => {
                    raw.push_str(&decode_text(l.comment_text()));
                    raw.push('\n');
                }
                Kind::DescriptionKey(v) => raw.push_str(&decode_text(v)),
                _ => {}
            }
        }
        (!raw.is_empty()).then_some(raw)
    }

    /// The `description:` value `pct config` prints: Proxmox's description, trailing
    /// newline included, through [`encode_text`] (so `a\nb` shows as `a%0Ab%0A`).
    // pve-container src/PVE/CLI/pct.pm config (encode_text of the API's description)
    pub fn pct_config_description(&self) -> Option<String> {
        self.description_raw().map(|d| encode_text(&d))
    }

    /// Replaces the description: every `#` line (and old `description:` line) of the
    /// section goes, and `text`'s lines, encoded, go to the top of the section. Trailing
    /// newlines are dropped, as Proxmox drops them; `""` removes the description.
    // pve-container src/PVE/LXC/Config.pm write_pct_config (split(/\n/, $descr), encode_text)
    pub fn set_description(&mut self, text: &str) {
        self.lines
            .retain(|l| !matches!(l.kind, Kind::Comment | Kind::DescriptionKey(_)));
        let new: Vec<Line> = description_lines(text)
            .into_iter()
            .map(Line::comment)
            .collect();
        self.lines.splice(0..0, new);
    }

    /// The raw `lxc.*` entries in file order (`lxc.k: v` and `lxc.k = v` alike).
    pub fn lxc(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines.iter().filter_map(|l| match &l.kind {
            Kind::Lxc(k, v) => Some((k.as_str(), v.as_str())),
            _ => None,
        })
    }

    /// Keeps the raw entries for which `keep(key, value)` holds; removes the others'
    /// lines. Nothing else changes.
    pub fn retain_lxc(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.lines.retain(|l| match &l.kind {
            Kind::Lxc(k, v) => keep(k, v),
            _ => true,
        });
    }

    /// Adds a raw entry, as [`Section::try_push_lxc`].
    ///
    /// # Panics
    /// When `try_push_lxc` fails (a key that is not `lxc.[a-z0-9_.-]+`, a line break or
    /// surrounding whitespace in the value).
    #[track_caller]
    pub fn push_lxc(&mut self, key: &str, value: &str) {
        if let Err(e) = self.try_push_lxc(key, value) {
            panic!("Section::push_lxc({key:?}, {value:?}): {e}");
        }
    }

    /// Adds a raw entry written `lxc.k: v` after the other raw lines (an
    /// `lxc.environment.runtime` entry after the others of its kind, before the rest,
    /// as Proxmox writes them); with none yet, after everything else in the section.
    pub fn try_push_lxc(&mut self, key: &str, value: &str) -> Result<(), EditError> {
        if value.contains(['\n', '\r']) {
            return Err(EditError::Newline(key.to_string()));
        }
        let line = Line::new(format!("{key}: {value}"));
        match &line.kind {
            Kind::Lxc(k, v) if k == key && v == value => {}
            Kind::Lxc(..) => {
                return Err(EditError::Unreadable {
                    key: key.to_string(),
                    value: value.to_string(),
                })
            }
            _ => return Err(EditError::InvalidKey(key.to_string())),
        }
        let is_lxc = |l: &Line| matches!(l.kind, Kind::Lxc(..));
        let is_env = |l: &Line| matches!(&l.kind, Kind::Lxc(k, _) if k == ENV_KEY);
        let at = if key == ENV_KEY {
            match self.lines.iter().rposition(is_env) {
                Some(i) => i + 1,
                None => self
                    .lines
                    .iter()
                    .position(is_lxc)
                    .unwrap_or_else(|| self.end_of_content()),
            }
        } else {
            self.lines
                .iter()
                .rposition(is_lxc)
                .map_or_else(|| self.end_of_content(), |i| i + 1)
        };
        self.lines.insert(at, line);
        Ok(())
    }

    /// Whether the section holds nothing but blank lines.
    pub fn is_empty(&self) -> bool {
        self.lines.iter().all(|l| l.kind == Kind::Blank)
    }

    /// What a snapshot of this section stores, in the form `write_pct_config` writes it:
    /// every key except `snapshots snapstate snaptime vmstate lock digest description`
    /// and `unusedN`, raw `lxc.*` entries included (values as Proxmox holds them after
    /// reading, see [`ConfFile::to_pve_text`]). The caller adds `snaptime`, `snapstate`
    /// and the snapshot's description.
    // pve-guest-common src/PVE/AbstractConfig.pm __snapshot_copy_config, __snapshot_prepare
    pub fn copy_for_snapshot(&self) -> Section {
        let mut held = Held::of(self);
        held.keys.retain(|k, _| {
            !matches!(
                k.as_str(),
                "snapshots" | "snapstate" | "snaptime" | "vmstate" | "lock" | "digest"
            ) && !is_numbered(k, "unused")
                // Proxmox never holds `delete` outside [pve:pending].
                && k != "delete"
        });
        held.description.clear();
        held.to_section()
    }

    fn key_lines<'a>(&'a self, key: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.lines
            .iter()
            .enumerate()
            .filter(move |(_, l)| matches!(&l.kind, Kind::Key(k, _) if k == key))
            .map(|(i, _)| i)
    }

    fn key_insert_pos(&self, key: &str) -> usize {
        let mut after_last = None;
        for (i, l) in self.lines.iter().enumerate() {
            if let Kind::Key(k, _) = &l.kind {
                if k.as_str() > key {
                    return i;
                }
                after_last = Some(i + 1);
            }
        }
        after_last
            .or_else(|| {
                self.lines
                    .iter()
                    .position(|l| matches!(l.kind, Kind::Lxc(..)))
            })
            .unwrap_or_else(|| self.end_of_content())
    }

    /// Index after the last non-blank line: new lines go before trailing blank lines.
    fn end_of_content(&self) -> usize {
        self.lines
            .iter()
            .rposition(|l| l.kind != Kind::Blank)
            .map_or(0, |i| i + 1)
    }
}

/// `prefix` followed by digits only (`unused0`, `mp12`).
fn is_numbered(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

// ---------------------------------------------------------------------------------
// What Proxmox holds of a section after reading it
// ---------------------------------------------------------------------------------

/// The hash `parse_pct_config` builds for one section.
struct Held {
    description: String,
    keys: BTreeMap<String, String>,
    env: Option<String>,
    lxc: Vec<(String, String)>,
}

impl Held {
    // pve-container src/PVE/LXC/Config.pm parse_pct_config
    fn of(section: &Section) -> Held {
        let mut held = Held {
            description: section.description_raw().unwrap_or_default(),
            keys: BTreeMap::new(),
            env: None,
            lxc: Vec::new(),
        };
        for l in &section.lines {
            match &l.kind {
                Kind::Lxc(k, v) if k == ENV_KEY => {
                    held.env = Some(match held.env.take() {
                        None => v.clone(),
                        Some(e) => format!("{e}\0{v}"),
                    });
                }
                Kind::Lxc(k, v) => held.lxc.push((k.clone(), v.clone())),
                Kind::Key(k, v) if k == "env" => held.env = Some(v.clone()),
                Kind::Key(k, v) => {
                    held.keys.insert(k.clone(), normalise(k, v));
                }
                _ => {}
            }
        }
        held
    }

    /// `scalar(keys %{$conf->{pending}})`: whether Proxmox writes the section at all.
    fn has_any(&self) -> bool {
        !self.description.is_empty()
            || !self.keys.is_empty()
            || self.env.is_some()
            || !self.lxc.is_empty()
    }

    fn lines(&self) -> Vec<String> {
        // pve-container src/PVE/LXC/Config.pm write_pct_config $generate_raw_config
        let mut out: Vec<String> = description_lines(&self.description)
            .into_iter()
            .map(|l| format!("#{}", encode_text(l)))
            .collect();
        for (k, v) in &self.keys {
            if !matches!(
                k.as_str(),
                "digest" | "description" | "pending" | "snapshots" | "snapname" | "env" | "lxc"
            ) {
                out.push(format!("{k}: {v}"));
            }
        }
        // `if (my $env = ...)`: Perl skips "" and "0"; then split(/\0+/).
        if let Some(env) = self.env.as_deref().filter(|e| !e.is_empty() && *e != "0") {
            let mut vars: Vec<&str> = env.split('\0').collect();
            while vars.last() == Some(&"") {
                vars.pop();
            }
            let first_empty = vars.first() == Some(&"");
            for (i, v) in vars.into_iter().enumerate() {
                if v.is_empty() && !(i == 0 && first_empty) {
                    continue; // \0+ collapses runs of separators
                }
                out.push(format!("{ENV_KEY}: {v}"));
            }
        }
        for (k, v) in &self.lxc {
            out.push(format!("{k}: {v}"));
        }
        out
    }

    fn to_section(&self) -> Section {
        Section {
            lines: self.lines().into_iter().map(Line::new).collect(),
        }
    }
}

/// The value Proxmox holds for a key after reading it: `check_type` turns booleans into
/// `1`/`0` and integers into plain numbers; anything else, or a value that fails the
/// check, stays as written.
// pve-container src/PVE/LXC/Config.pm check_type, $confdesc
fn normalise(key: &str, value: &str) -> String {
    const BOOLEANS: [&str; 6] = [
        "console",
        "debug",
        "onboot",
        "protection",
        "template",
        "unprivileged",
    ];
    const INTEGERS: [&str; 6] = ["cores", "cpuunits", "memory", "snaptime", "swap", "tty"];
    if BOOLEANS.contains(&key) {
        if let Some(b) = super::props::parse_boolean(value) {
            return if b { "1" } else { "0" }.to_string();
        }
    } else if INTEGERS.contains(&key) && value.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = value.parse::<u64>() {
            return n.to_string();
        }
    }
    value.to_string()
}

// ---------------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    /// The blank lines before the header (Proxmox writes exactly one).
    lead: Vec<Line>,
    header: Line,
    /// `None` for `[pve:pending]`.
    name: Option<String>,
    body: Section,
}

impl Part {
    fn new(name: Option<&str>, body: Section) -> Part {
        let header = match name {
            Some(n) => format!("[{n}]"),
            None => "[pve:pending]".to_string(),
        };
        Part {
            lead: vec![Line::blank()],
            header: Line::header(header),
            name: name.map(str::to_string),
            body,
        }
    }
}

/// A CT config file: the main section, an optional `[pve:pending]` section, and
/// snapshot sections, with every original line kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfFile {
    main: Section,
    /// Pending and snapshot sections in file order.
    parts: Vec<Part>,
}

impl ConfFile {
    /// An empty file.
    pub fn new() -> ConfFile {
        ConfFile::default()
    }

    /// Reads a config file (see the module docs for what is accepted).
    pub fn parse(text: &str) -> Result<ConfFile, ConfError> {
        let mut conf = ConfFile::new();
        let mut raw_lines: Vec<&str> = text.split('\n').collect();
        // A final "\n" ends the last line rather than starting an empty one.
        let ends_with_newline = raw_lines.last() == Some(&"");
        if ends_with_newline {
            raw_lines.pop();
        }
        let count = raw_lines.len();
        for (i, raw) in raw_lines.into_iter().enumerate() {
            let newline = i + 1 < count || ends_with_newline;
            let text = raw.to_string();
            let header = if text.chars().all(is_space) {
                None
            } else {
                parse_header(&text)
            };
            if let Some(h) = header {
                let name = match h {
                    Header::Pending => None,
                    Header::Snapshot(n) => Some(n),
                };
                if conf.parts.iter().any(|p| p.name == name) {
                    return Err(ConfError {
                        line: i + 1,
                        message: format!("duplicate section {}", text.trim_end()),
                    });
                }
                // Blank lines before a header separate the sections: they go with it.
                let current = conf.current();
                let keep = current.end_of_content();
                let lead = current.lines.split_off(keep);
                conf.parts.push(Part {
                    lead,
                    header: Line {
                        text,
                        newline,
                        kind: Kind::Header,
                    },
                    name,
                    body: Section::default(),
                });
                continue;
            }
            let kind = classify(&text).ok_or_else(|| ConfError {
                line: i + 1,
                // Proxmox's warning text (parse_pct_config).
                message: format!("unable to parse config: {text}"),
            })?;
            conf.current().lines.push(Line {
                text,
                newline,
                kind,
            });
        }
        Ok(conf)
    }

    fn current(&mut self) -> &mut Section {
        match self.parts.last_mut() {
            Some(p) => &mut p.body,
            None => &mut self.main,
        }
    }

    /// The file: for a parsed and unedited file exactly the text it was parsed from.
    pub fn to_text(&self) -> String {
        let mut all: Vec<&Line> = self.main.lines.iter().collect();
        for p in &self.parts {
            all.extend(&p.lead);
            all.push(&p.header);
            all.extend(&p.body.lines);
        }
        let mut out = String::new();
        let last = all.len().saturating_sub(1);
        for (i, l) in all.iter().enumerate() {
            out.push_str(&l.text);
            // A line that lost its place at the end of the file gets its newline back.
            if l.newline || i < last {
                out.push('\n');
            }
        }
        out
    }

    /// The file as Proxmox writes it the next time it saves this config (any `pct set`,
    /// snapshot, ...): `parse_pct_config` then `write_pct_config`. Blank lines go, every
    /// section is sorted with its description on top, repeated keys collapse to the last,
    /// `lxc.k = v` becomes `lxc.k: v`, boolean and integer keys are normalised (`yes` →
    /// `1`), `snapstate` leaves the main section, `unusedN` naming a volume still mounted
    /// goes, an empty `[pve:pending]` goes, and snapshots are sorted by name.
    // pve-container src/PVE/LXC/Config.pm parse_pct_config, write_pct_config
    pub fn to_pve_text(&self) -> String {
        let mut main = Held::of(&self.main);
        main.keys.remove("snapstate"); // parse_pct_config: delete $res->{snapstate}
        main.keys.remove("delete"); // only allowed in [pve:pending]
        let used: Vec<String> = main
            .keys
            .iter()
            .filter(|(k, _)| *k == "rootfs" || is_numbered(k, "mp"))
            .filter_map(|(_, v)| MountPoint::parse(v).ok())
            .filter(|m| m.kind() == MountKind::Volume && m.volume.contains(':'))
            .map(|m| m.volume)
            .collect();
        main.keys
            .retain(|k, v| !(is_numbered(k, "unused") && used.contains(v)));

        let mut out = String::new();
        let mut emit = |lines: Vec<String>| {
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
        };
        emit(main.lines());
        if let Some(p) = self.parts.iter().find(|p| p.name.is_none()) {
            let held = Held::of(&p.body);
            if held.has_any() {
                emit(vec![String::new(), "[pve:pending]".into()]);
                emit(held.lines());
            }
        }
        let mut snaps: Vec<(&str, &Section)> = self
            .parts
            .iter()
            .filter_map(|p| Some((p.name.as_deref()?, &p.body)))
            .collect();
        snaps.sort_by(|a, b| a.0.cmp(b.0));
        for (name, body) in snaps {
            let mut held = Held::of(body);
            held.keys.remove("delete");
            emit(vec![String::new(), format!("[{name}]")]);
            emit(held.lines());
        }
        out
    }

    pub fn main(&self) -> &Section {
        &self.main
    }

    pub fn main_mut(&mut self) -> &mut Section {
        &mut self.main
    }

    pub fn pending(&self) -> Option<&Section> {
        self.parts
            .iter()
            .find(|p| p.name.is_none())
            .map(|p| &p.body)
    }

    pub fn pending_mut(&mut self) -> Option<&mut Section> {
        self.parts
            .iter_mut()
            .find(|p| p.name.is_none())
            .map(|p| &mut p.body)
    }

    /// The `[pve:pending]` section, created right after the main section (where
    /// `write_pct_config` puts it) if there is none. Proxmox writes no pending section
    /// when it is empty: remove it with [`ConfFile::remove_pending`] when done with it.
    pub fn pending_or_insert(&mut self) -> &mut Section {
        let at = match self.parts.iter().position(|p| p.name.is_none()) {
            Some(i) => i,
            None => {
                self.parts.insert(0, Part::new(None, Section::default()));
                0
            }
        };
        &mut self.parts[at].body
    }

    pub fn remove_pending(&mut self) -> Option<Section> {
        let i = self.parts.iter().position(|p| p.name.is_none())?;
        Some(self.parts.remove(i).body)
    }

    pub fn snapshot(&self, name: &str) -> Option<&Section> {
        self.parts
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| &p.body)
    }

    pub fn snapshot_mut(&mut self, name: &str) -> Option<&mut Section> {
        self.parts
            .iter_mut()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| &mut p.body)
    }

    /// Snapshot names in file order.
    pub fn snapshot_names(&self) -> Vec<&str> {
        self.parts
            .iter()
            .filter_map(|p| p.name.as_deref())
            .collect()
    }

    /// Adds a snapshot section, as [`ConfFile::try_add_snapshot`].
    ///
    /// # Panics
    /// When `name` is not a valid section name (`[a-z][a-z0-9_-]+`, any case).
    #[track_caller]
    pub fn add_snapshot(&mut self, name: &str, section: Section) -> Option<Section> {
        match self.try_add_snapshot(name, section) {
            Ok(old) => old,
            Err(e) => panic!("ConfFile::add_snapshot: {e}"),
        }
    }

    /// Adds a snapshot section where `write_pct_config` puts it: before the first
    /// snapshot whose name sorts after it, else at the end of the file, behind a blank
    /// line. A snapshot of the same name is replaced in place and returned.
    pub fn try_add_snapshot(
        &mut self,
        name: &str,
        section: Section,
    ) -> Result<Option<Section>, EditError> {
        if !is_section_name(name) {
            return Err(EditError::InvalidSnapshotName(name.to_string()));
        }
        if let Some(body) = self.snapshot_mut(name) {
            return Ok(Some(std::mem::replace(body, section)));
        }
        let at = self
            .parts
            .iter()
            .position(|p| p.name.as_deref().is_some_and(|n| n > name))
            .unwrap_or(self.parts.len());
        self.parts.insert(at, Part::new(Some(name), section));
        Ok(None)
    }

    /// Removes a snapshot section with its header and the blank line before it.
    pub fn remove_snapshot(&mut self, name: &str) -> Option<Section> {
        let i = self
            .parts
            .iter()
            .position(|p| p.name.as_deref() == Some(name))?;
        Some(self.parts.remove(i).body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASIC: &str = include_str!("../../../tests/fixtures/pve/100-basic.conf");
    const SNAPSHOTS: &str = include_str!("../../../tests/fixtures/pve/101-snapshots.conf");
    const FOREIGN: &str = include_str!("../../../tests/fixtures/pve/102-foreign.conf");
    const PENDING: &str = include_str!("../../../tests/fixtures/pve/103-pending.conf");
    const TEMPLATE: &str = include_str!("../../../tests/fixtures/pve/104-template.conf");
    const ODD: &str = include_str!("../../../tests/fixtures/pve/odd-handwritten.conf");
    const ODD_PVE: &str = include_str!("../../../tests/fixtures/pve/odd-handwritten.pve.conf");
    const ODD_LEGACY: &str = include_str!("../../../tests/fixtures/pve/odd-legacy.conf");

    /// The fixtures written the way Proxmox writes them.
    const PROXMOX_SHAPED: [(&str, &str); 6] = [
        ("100-basic", BASIC),
        ("101-snapshots", SNAPSHOTS),
        ("102-foreign", FOREIGN),
        ("103-pending", PENDING),
        ("104-template", TEMPLATE),
        ("odd-handwritten.pve", ODD_PVE),
    ];

    fn parse(text: &str) -> ConfFile {
        match ConfFile::parse(text) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    /// The one line that differs between two texts of equal line count.
    fn changed_lines<'a>(a: &'a str, b: &'a str) -> Vec<(&'a str, &'a str)> {
        assert_eq!(a.split('\n').count(), b.split('\n').count());
        a.split('\n')
            .zip(b.split('\n'))
            .filter(|(x, y)| x != y)
            .collect()
    }

    #[test]
    fn every_fixture_round_trips_byte_for_byte() {
        for (name, text) in PROXMOX_SHAPED
            .iter()
            .chain(&[("odd-handwritten", ODD), ("odd-legacy", ODD_LEGACY)])
        {
            assert_eq!(parse(text).to_text(), *text, "{name}");
        }
        assert!(!ODD.ends_with('\n'), "the odd fixture has no final newline");
    }

    #[test]
    fn odd_texts_round_trip() {
        for text in [
            "",
            "\n",
            "\n\n",
            "memory: 512",
            "  \t\n\n",
            "arch: amd64\r\nmemory: 512\r\n\r\n[s1]\r\nmemory: 256\r\n",
            "[pve:pending]\nmemory: 1\n",
            "#only a comment",
            "memory: 512\n\n\n[s1]   \n\n",
            "lxc.idmap =u 0 100000 65536\nlxc.x:\n",
        ] {
            assert_eq!(parse(text).to_text(), text, "{text:?}");
        }
    }

    #[test]
    fn proxmox_shaped_fixtures_are_what_proxmox_writes() {
        // parse_pct_config + write_pct_config (pve-container src/PVE/LXC/Config.pm) give
        // the same text back for a file Proxmox wrote.
        for (name, text) in PROXMOX_SHAPED {
            assert_eq!(parse(text).to_pve_text(), text, "{name}");
        }
    }

    #[test]
    fn odd_file_reads_like_proxmox_and_canonicalises() {
        // parse_pct_config: unsorted keys, comments anywhere (they are description),
        // `lxc.k = v`, blank lines, trailing whitespace, `key:value` without a space.
        let conf = parse(ODD);
        let main = conf.main();
        assert_eq!(main.get("hostname"), Some("legacy01"));
        assert_eq!(main.get("memory"), Some("2048"));
        assert_eq!(main.get("cores"), Some("2"));
        assert_eq!(main.get("onboot"), Some("yes"));
        assert_eq!(
            main.description(),
            " hand-written notes: keep in sync with wiki\nsecond note 100%"
        );
        assert_eq!(
            main.lxc().collect::<Vec<_>>(),
            [
                ("lxc.apparmor.profile", "unconfined"),
                ("lxc.cgroup2.devices.allow", "c 226:* rwm"),
                (
                    "lxc.mount.entry",
                    "/dev/dri dev/dri none bind,optional,create=dir"
                ),
            ]
        );
        assert_eq!(conf.snapshot_names(), ["before-change"]);
        // write_pct_config after reading it.
        assert_eq!(conf.to_pve_text(), ODD_PVE);
    }

    #[test]
    fn legacy_spellings_read_like_proxmox() {
        // parse_pct_config: an old `description:` line, `snapstate:` matched anywhere in
        // a line, a repeated key (last wins), a case-insensitive [PVE:PENDING] header.
        let conf = parse(ODD_LEGACY);
        let main = conf.main();
        assert_eq!(main.description(), "kept from PVE 3: old style\nand a line");
        assert_eq!(main.get("memory"), Some("1024"));
        assert_eq!(
            main.keys().collect::<Vec<_>>(),
            [("arch", "amd64"), ("hostname", "old"), ("memory", "1024")]
        );
        let s = conf.snapshot("s1").unwrap();
        assert_eq!(s.get("snapstate"), Some("delete"));
        assert_eq!(s.get("hostname"), None);
        assert_eq!(conf.pending().and_then(|p| p.get("swap")), Some("0"));
    }

    #[test]
    fn description_decodes_encoded_characters() {
        // pve-common src/PVE/ParseUtils.pm decode_text; parse_pct_config joins # lines.
        let conf = parse(BASIC);
        assert_eq!(
            conf.main().description(),
            "Web frontend for shop.example.org\n\nOwner: platform team (Zoë)\nDisk alert at 90% usage"
        );
        // pct config prints the API's value (trailing newline included) encoded.
        assert_eq!(
            conf.main().pct_config_description().as_deref(),
            Some("Web frontend for shop.example.org%0A%0AOwner%3A platform team (Zo%C3%AB)%0ADisk alert at 90%25 usage%0A")
        );
        assert_eq!(parse(TEMPLATE).snapshot("x"), None);
        assert_eq!(parse("memory: 1\n").main().description(), "");
        assert_eq!(parse("memory: 1\n").main().pct_config_description(), None);
    }

    #[test]
    fn encode_text_escapes_controls_high_bytes_colon_and_percent() {
        // pve-common ParseUtils.pm encode_text: unsafe = ^\x20-\x24\x26-\x39\x3b-\x7e.
        assert_eq!(
            encode_text("a: 50% ~!#$&'()*+,-./9;<=>?@[]^_`{|}"),
            "a%3A 50%25 ~!#$&'()*+,-./9;<=>?@[]^_`{|}"
        );
        assert_eq!(
            encode_text("tab\there\r\x7fé→"),
            "tab%09here%0D%7F%C3%A9%E2%86%92"
        );
        assert_eq!(decode_text("a%3a%3A%zz%4"), "a::%zz%4");
        assert_eq!(decode_text("%FF"), "\u{FFFD}");
        for s in ["", "plain", "x: 100% sure\t", "Zoë → ok", "%41"] {
            assert_eq!(decode_text(&encode_text(s)), s);
        }
    }

    #[test]
    fn set_description_writes_encoded_lines_at_the_top() {
        // write_pct_config: split(/\n/) drops trailing empty lines; each line encoded.
        let mut s = Section::new();
        s.set("memory", "512");
        s.set_description("first: line\n\n50%\n\n");
        let conf = {
            let mut c = ConfFile::new();
            *c.main_mut() = s;
            c
        };
        assert_eq!(conf.to_text(), "#first%3A line\n#\n#50%25\nmemory: 512\n");
        assert_eq!(conf.main().description(), "first: line\n\n50%");
        // Replacing it removes every # line, wherever it was.
        let mut odd = parse(ODD);
        odd.main_mut().set_description("new");
        assert!(odd
            .to_text()
            .starts_with("#new\n\n\nhostname: legacy01   \n"));
        assert!(!odd.to_text().contains("second note"));
        odd.main_mut().set_description("");
        assert_eq!(odd.main().description_raw(), None);
    }

    #[test]
    fn set_of_an_existing_foreign_key_keeps_every_other_byte() {
        let mut conf = parse(FOREIGN);
        conf.main_mut().set("cpulimit", "4");
        assert_eq!(
            changed_lines(FOREIGN, &conf.to_text()),
            [("cpulimit: 2.5", "cpulimit: 4")]
        );
        // Same in the hand-written file: the line is rewritten, its neighbours are not,
        // and the missing final newline stays missing.
        let mut odd = parse(ODD);
        odd.main_mut().set("hostname", "legacy02");
        assert_eq!(
            changed_lines(ODD, &odd.to_text()),
            [("hostname: legacy01   ", "hostname: legacy02")]
        );
        odd.snapshot_mut("before-change")
            .unwrap()
            .set("snaptime", "1700000001");
        assert!(odd.to_text().ends_with("snaptime: 1700000001"));
        // A duplicate key collapses to the line that counts.
        let mut dup = parse("memory: 1\nswap: 0\nmemory: 2\n");
        dup.main_mut().set("memory", "3");
        assert_eq!(dup.to_text(), "swap: 0\nmemory: 3\n");
    }

    #[test]
    fn new_keys_go_where_write_pct_config_puts_them() {
        // write_pct_config: `foreach my $key (sort keys %$conf)`, then lxc lines.
        let mut conf = parse(FOREIGN);
        conf.main_mut().set("cpuunits", "2048");
        conf.main_mut().set("cmode", "shell");
        conf.main_mut().set("zzz", "1");
        let text = conf.to_text();
        assert!(text.contains("\ncmode: shell\ncores: 4\ncpulimit: 2.5\ncpuunits: 2048\ndev0: "));
        assert!(
            text.contains("\nunused0: local-zfs:subvol-102-disk-2\nzzz: 1\nlxc.apparmor.profile")
        );
        assert_eq!(conf.to_pve_text(), text);
        // In a section without keys, before the raw lines; in an empty one, at the top.
        let mut s = parse("#d\nlxc.a: 1\n").main().clone();
        s.set("memory", "1");
        let mut c = ConfFile::new();
        *c.main_mut() = s;
        assert_eq!(c.to_text(), "#d\nmemory: 1\nlxc.a: 1\n");
        // In the last section of a file with no final newline: the newline comes back.
        let mut c = parse("memory: 1");
        c.main_mut().set("swap", "0");
        assert_eq!(c.to_text(), "memory: 1\nswap: 0\n");
        // Before trailing blank lines.
        let mut c = parse("memory: 1\n\n");
        c.main_mut().push_lxc("lxc.a", "b");
        assert_eq!(c.to_text(), "memory: 1\nlxc.a: b\n\n");
    }

    #[test]
    fn set_refuses_what_would_not_read_back() {
        let mut s = Section::new();
        assert_eq!(
            s.try_set("Memory", "1"),
            Err(EditError::InvalidKey("Memory".into()))
        );
        assert_eq!(
            s.try_set("lxc.a", "1"),
            Err(EditError::InvalidKey("lxc.a".into()))
        );
        assert_eq!(
            s.try_set("a1b", "1"),
            Err(EditError::InvalidKey("a1b".into()))
        );
        assert_eq!(
            s.try_set("hostname", "a\nb"),
            Err(EditError::Newline("hostname".into()))
        );
        for bad in ["", " x", "x ", "x snapstate: delete"] {
            assert!(
                matches!(
                    s.try_set("hostname", bad),
                    Err(EditError::Unreadable { .. })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            s.try_push_lxc("lxc.Bad", "1"),
            Err(EditError::InvalidKey("lxc.Bad".into()))
        );
        assert_eq!(
            s.try_push_lxc("memory", "1"),
            Err(EditError::InvalidKey("memory".into()))
        );
        assert!(s.try_push_lxc("lxc.a", " x").is_err());
        assert!(s.is_empty());
        assert!(s.try_set("hostname", "web01").is_ok());
        assert!(s.try_push_lxc("lxc.a", "").is_ok());
    }

    #[test]
    #[should_panic(expected = "detected invalid newline inside property 'hostname'")]
    fn set_panics_on_a_newline() {
        Section::new().set("hostname", "a\nb");
    }

    #[test]
    fn remove_and_keys() {
        let mut conf = parse(FOREIGN);
        let main = conf.main_mut();
        assert_eq!(main.remove("protection").as_deref(), Some("1"));
        assert_eq!(main.remove("protection"), None);
        assert_eq!(
            changed_lines(&FOREIGN.replace("protection: 1\n", ""), &conf.to_text()),
            Vec::<(&str, &str)>::new()
        );
        let conf = parse(BASIC);
        let keys: Vec<&str> = conf.main().keys().map(|(k, _)| k).collect();
        assert_eq!(keys.first(), Some(&"arch"));
        assert_eq!(keys.last(), Some(&"unprivileged"));
        let mut conf = parse(BASIC);
        assert_eq!(
            conf.main_mut()
                .remove("description")
                .as_deref()
                .map(|d| d.lines().count()),
            Some(4)
        );
        assert!(conf.to_text().starts_with("arch: amd64\n"));
    }

    #[test]
    fn raw_lxc_entries_keep_their_order_and_edits_touch_only_them() {
        // write_pct_config: lxc.environment.runtime first, then $conf->{lxc} in order.
        let mut conf = parse(FOREIGN);
        let main = conf.main_mut();
        main.retain_lxc(|k, _| k != "lxc.mount.entry");
        main.push_lxc(
            "lxc.mount.entry",
            "/dev/nvidia1 dev/nvidia1 none bind,optional,create=file",
        );
        main.push_lxc("lxc.environment.runtime", "CUDA_VISIBLE_DEVICES=0");
        let got: Vec<(&str, &str)> = main.lxc().collect();
        assert_eq!(
            got,
            [
                ("lxc.environment.runtime", "CUDA_VISIBLE_DEVICES=0"),
                ("lxc.apparmor.profile", "unconfined"),
                ("lxc.cgroup2.devices.allow", "c 195:* rwm"),
                (
                    "lxc.mount.entry",
                    "/dev/nvidia1 dev/nvidia1 none bind,optional,create=file"
                ),
            ]
        );
        assert_eq!(conf.to_pve_text(), conf.to_text());
        // A hand-written `lxc.k = v` line stays as written until it is removed.
        let mut odd = parse(ODD);
        odd.main_mut().push_lxc("lxc.cap.drop", "sys_time");
        assert!(odd.to_text().contains(
            "lxc.mount.entry = /dev/dri dev/dri none bind,optional,create=dir\nlxc.cap.drop: sys_time\n\n[before-change]"
        ));
    }

    #[test]
    fn building_from_new_gives_what_proxmox_writes() {
        // 102: write_pct_config's layout (sorted keys, # lines on top, lxc lines last),
        // whatever order the keys are set in.
        let mut conf = ConfFile::new();
        let m = conf.main_mut();
        m.push_lxc("lxc.apparmor.profile", "unconfined");
        for (k, v) in [
            ("unused0", "local-zfs:subvol-102-disk-2"),
            ("hostname", "media"),
            ("rootfs", "local-zfs:subvol-102-disk-0,size=1536M"),
            ("arch", "amd64"),
            ("tty", "4"),
            ("net0", "name=eth0,bridge=vmbr0,firewall=1,hwaddr=BC:24:11:A4:55:10,ip=dhcp,ip6=auto,tag=20,type=veth"),
            ("cores", "4"),
            ("memory", "4096"),
            ("mp1", "/tank/shared,mp=/mnt/shared,ro=1"),
            ("mp0", "local-zfs:subvol-102-disk-1,mp=/srv/media,backup=1,size=512G"),
            ("dev1", "/dev/nvidia0,gid=44,mode=0666"),
            ("dev0", "/dev/dri/renderD128,gid=104,mode=0666"),
            ("features", "fuse=1,mount=nfs;cifs,nesting=1"),
            ("cpulimit", "2.5"),
            ("hookscript", "local:snippets/media-hook.sh"),
            ("onboot", "1"),
            ("ostype", "debian"),
            ("protection", "1"),
            ("startup", "order=3,up=30"),
            ("swap", "1024"),
            ("timezone", "Europe/Berlin"),
            ("unprivileged", "1"),
        ] {
            m.set(k, v);
        }
        m.set_description("Media server: NFS + iGPU");
        m.push_lxc("lxc.cgroup2.devices.allow", "c 195:* rwm");
        m.push_lxc(
            "lxc.mount.entry",
            "/dev/nvidia0 dev/nvidia0 none bind,optional,create=file",
        );
        m.push_lxc(
            "lxc.mount.entry",
            "/dev/nvidia-caps dev/nvidia-caps none bind,optional,create=dir",
        );
        assert_eq!(conf.to_text(), FOREIGN);
    }

    #[test]
    fn snapshots_built_like_proxmox_match_the_fixture() {
        // pve-guest-common src/PVE/AbstractConfig.pm __snapshot_prepare: lock the CT,
        // copy the config (__snapshot_copy_config), add snapstate/snaptime/description;
        // write_pct_config sorts the sections by name.
        let net = "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:7C:02:9E,ip=dhcp,type=veth";
        let gpu_lxc = [
            ("lxc.cgroup2.devices.allow", "c 195:* rwm"),
            ("lxc.cgroup2.devices.allow", "c 508:* rwm"),
            (
                "lxc.mount.entry",
                "/dev/nvidia0 dev/nvidia0 none bind,optional,create=file",
            ),
            (
                "lxc.mount.entry",
                "/dev/nvidiactl dev/nvidiactl none bind,optional,create=file",
            ),
            (
                "lxc.mount.entry",
                "/dev/nvidia-uvm dev/nvidia-uvm none bind,optional,create=file",
            ),
        ];
        let mut conf = ConfFile::new();
        let m = conf.main_mut();
        for (k, v) in [
            ("arch", "amd64"),
            ("cores", "8"),
            ("features", "nesting=1"),
            ("hostname", "gpu01"),
            ("memory", "8192"),
            ("net0", net),
            ("ostype", "ubuntu"),
            ("rootfs", "local-zfs:subvol-101-disk-0,size=32G"),
            ("swap", "0"),
            ("tags", "phoenix"),
        ] {
            m.set(k, v);
        }
        m.set_description("GPU worker");

        // `pct snapshot 101 base` (committed: snapstate gone, parent set).
        let mut snap = conf.main().copy_for_snapshot();
        snap.set("snaptime", "1717000000");
        snap.set_description("fresh install");
        conf.add_snapshot("base", snap);
        conf.main_mut().set("parent", "base");

        // The driver goes in, then `pct snapshot 101 with-driver`.
        let m = conf.main_mut();
        m.set("memory", "16384");
        m.set("tags", "gpu;phoenix");
        for (k, v) in gpu_lxc {
            m.push_lxc(k, v);
        }
        let mut snap = conf.main().copy_for_snapshot();
        snap.set("snaptime", "1717100000");
        snap.set_description("NVIDIA 550 driver + passthrough");
        conf.add_snapshot("with-driver", snap);
        conf.main_mut().set("parent", "with-driver");

        // `pct snapshot 101 upgrade` caught in prepare: lock set, snapstate prepare.
        conf.main_mut().set("lock", "snapshot");
        let mut snap = conf.main().copy_for_snapshot();
        snap.set("snapstate", "prepare");
        snap.set("snaptime", "1717200000");
        snap.set_description("before upgrade: 24.04 → 24.10");
        conf.add_snapshot("upgrade", snap);

        assert_eq!(conf.to_text(), SNAPSHOTS);
        assert_eq!(conf.snapshot_names(), ["base", "upgrade", "with-driver"]);
        let parsed = parse(SNAPSHOTS);
        assert_eq!(
            parsed.snapshot("with-driver").and_then(|s| s.get("parent")),
            Some("base")
        );
        assert_eq!(
            parsed
                .snapshot("upgrade")
                .map(Section::description)
                .as_deref(),
            Some("before upgrade: 24.04 → 24.10")
        );
        assert_eq!(parsed.snapshot("base").map(|s| s.lxc().count()), Some(0));
    }

    #[test]
    fn copy_for_snapshot_skips_what_proxmox_skips() {
        // __snapshot_copy_config: snapshots snapstate snaptime vmstate lock digest
        // description unusedN are not copied; the raw lxc entries are.
        let conf = parse(FOREIGN);
        let mut main = conf.main().clone();
        main.set("lock", "snapshot");
        main.set("parent", "p");
        main.set("onboot", "yes");
        let copy = main.copy_for_snapshot();
        assert_eq!(copy.get("lock"), None);
        assert_eq!(copy.get("unused0"), None);
        assert_eq!(copy.get("parent"), Some("p"));
        assert_eq!(copy.get("onboot"), Some("1")); // check_type when Proxmox read it
        assert_eq!(copy.description(), "");
        assert_eq!(copy.lxc().count(), main.lxc().count());
        assert_eq!(copy.keys().count(), main.keys().count() - 2);
    }

    #[test]
    fn snapshot_sections_sort_and_remove_cleanly() {
        let mut conf = parse(SNAPSHOTS);
        let with_driver = conf.remove_snapshot("with-driver").unwrap();
        assert_eq!(with_driver.get("snaptime"), Some("1717100000"));
        let mut s = Section::new();
        s.set("snaptime", "1");
        conf.add_snapshot("aaa", s.clone());
        conf.add_snapshot("zzz", s.clone());
        conf.add_snapshot("cc", s.clone());
        assert_eq!(
            conf.snapshot_names(),
            ["aaa", "base", "cc", "upgrade", "zzz"]
        );
        assert!(conf
            .to_text()
            .contains("\n\n[aaa]\nsnaptime: 1\n\n[base]\n#fresh install\n"));
        assert!(conf.to_text().ends_with("\n\n[zzz]\nsnaptime: 1\n"));
        // Replacing keeps the place.
        assert!(conf.add_snapshot("cc", Section::new()).is_some());
        assert_eq!(
            conf.snapshot_names(),
            ["aaa", "base", "cc", "upgrade", "zzz"]
        );
        for n in ["aaa", "zzz", "cc"] {
            conf.remove_snapshot(n);
        }
        conf.add_snapshot("with-driver", with_driver);
        assert_eq!(conf.to_text(), SNAPSHOTS);
        assert_eq!(
            conf.try_add_snapshot("2024", Section::new()),
            Err(EditError::InvalidSnapshotName("2024".into()))
        );
        // An empty file: Proxmox's output starts with the blank line too.
        let mut c = ConfFile::new();
        c.add_snapshot("s1", s);
        assert_eq!(c.to_text(), "\n[s1]\nsnaptime: 1\n");
    }

    #[test]
    fn pending_section_reads_and_goes_after_main() {
        let conf = parse(PENDING);
        let p = conf.pending().unwrap();
        assert_eq!(p.get("delete"), Some("nameserver,searchdomain"));
        assert_eq!(p.get("features"), Some("keyctl=1,nesting=1"));
        assert_eq!(conf.snapshot_names(), Vec::<&str>::new());
        // Created: right after main, before snapshots (write_pct_config order).
        let mut conf = parse(SNAPSHOTS);
        conf.pending_or_insert().set("cores", "4");
        let text = conf.to_text();
        assert!(text.contains("lxc.mount.entry: /dev/nvidia-uvm dev/nvidia-uvm none bind,optional,create=file\n\n[pve:pending]\ncores: 4\n\n[base]\n"));
        assert_eq!(conf.to_pve_text(), text);
        // Empty: Proxmox does not write it.
        let mut conf = parse(BASIC);
        conf.pending_or_insert();
        assert_eq!(conf.to_pve_text(), BASIC);
        assert!(conf.remove_pending().is_some());
        assert_eq!(conf.to_text(), BASIC);
    }

    #[test]
    fn crlf_files_round_trip_and_read_like_lf() {
        let text = "#note: x\r\nmemory: 512\r\nlxc.a = b\r\n\r\n[s1]\r\nmemory: 256\r\n";
        let mut conf = parse(text);
        assert_eq!(conf.main().get("memory"), Some("512"));
        assert_eq!(conf.main().description(), "note: x");
        assert_eq!(conf.main().lxc().collect::<Vec<_>>(), [("lxc.a", "b")]);
        assert_eq!(
            conf.snapshot("s1").and_then(|s| s.get("memory")),
            Some("256")
        );
        conf.main_mut().set("memory", "1024");
        assert_eq!(
            conf.to_text(),
            text.replace("memory: 512\r", "memory: 1024")
        );
    }

    #[test]
    fn unparseable_lines_are_errors_with_line_numbers() {
        // parse_pct_config's "unable to parse config: <line>".
        for (text, line) in [
            ("memory: 1\n  swap: 0\n", 2),
            ("memory:\n", 1),
            ("Memory: 1\n", 1),
            ("memory 1\n", 1),
            ("a\n\n[x]\n", 1),
            ("memory: 1\n\n[x]\n", 3),
            ("lxc.foo bar\n", 1),
            ("lxc.Foo: bar\n", 1),
            ("[s1]\nmemory: 1\n[s1]\n", 3),
            ("[pve:pending]\n[PVE:PENDING]\n", 2),
        ] {
            let err = ConfFile::parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
        }
        assert_eq!(
            ConfFile::parse("ok: 1\nbad line\n")
                .unwrap_err()
                .to_string(),
            "line 2: unable to parse config: bad line"
        );
    }

    #[test]
    fn to_pve_text_drops_what_proxmox_drops() {
        // write_pct_config removes unusedN still in use; parse_pct_config deletes
        // snapstate from the main section and refuses `delete` outside [pve:pending].
        let conf = parse(
            "memory: 0512\nonboot: TRUE\nrootfs: local-zfs:subvol-1-disk-0,size=8G\n\
             snapstate: prepare\ndelete: swap\nunused0: local-zfs:subvol-1-disk-0\n\
             unused1: local-zfs:subvol-1-disk-9\nlxc.environment.runtime: A=1\n\
             lxc.b: 1\nlxc.environment.runtime = B=2\n\n[pve:pending]\n\n[s1]\n",
        );
        assert_eq!(
            conf.to_pve_text(),
            "memory: 512\nonboot: 1\nrootfs: local-zfs:subvol-1-disk-0,size=8G\n\
             unused1: local-zfs:subvol-1-disk-9\nlxc.environment.runtime: A=1\n\
             lxc.environment.runtime: B=2\nlxc.b: 1\n\n[s1]\n"
        );
    }
}
