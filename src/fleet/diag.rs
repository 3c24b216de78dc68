//! Problems a user must fix, located in the file that holds them.
//!
//! Every check (JSON syntax, schemas, the semantic rules of the config module) produces
//! [`Problem`]s; none stops at the first. A problem knows its file, byte span, JSON path,
//! what is wrong and what to do, and renders through `miette`. This module owns the
//! shape of a problem and its JSON form; it decides nothing about configs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, SourceCode};
use serde::Serialize;

use crate::fleet::json::Span;

/// A text file phoenix read, kept for locating problems.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: String) -> Arc<Self> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Arc::new(SourceFile {
            path: path.into(),
            text,
            line_starts,
        })
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self.text[start..offset].chars().count() + 1;
        (line + 1, col)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One thing wrong with the user's input.
#[derive(Clone, Debug)]
pub struct Problem {
    pub severity: Severity,
    /// Stable identifier, e.g. `config::unknown-parent`.
    pub code: &'static str,
    pub path: PathBuf,
    /// The file's text when it could be read; problems about unreadable files have none.
    pub source: Option<Arc<SourceFile>>,
    pub span: Span,
    /// JSON pointer of the value concerned (`/lxc_configs/950/memory_mb`), empty for the root.
    pub pointer: String,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
    /// Other places that explain this one (the first of two duplicates, a cycle's members).
    pub related: Vec<(Span, String)>,
    /// Line and column in a file that has no usable text (where its bytes stop being UTF-8).
    pub position: Option<(usize, usize)>,
}

impl Problem {
    pub fn error(code: &'static str, file: &Arc<SourceFile>, span: Span, pointer: &str) -> Self {
        Problem {
            severity: Severity::Error,
            code,
            path: file.path.clone(),
            source: Some(file.clone()),
            span,
            pointer: pointer.to_string(),
            message: String::new(),
            label: String::new(),
            help: None,
            related: Vec::new(),
            position: None,
        }
    }

    /// A problem with a file as a whole (missing, unreadable, not text).
    pub fn file(code: &'static str, path: &Path, message: String, help: &str) -> Self {
        Problem {
            severity: Severity::Error,
            code,
            path: path.to_path_buf(),
            source: None,
            span: Span::default(),
            pointer: String::new(),
            message,
            label: String::new(),
            help: Some(help.to_string()),
            related: Vec::new(),
            position: None,
        }
    }

    pub fn message(mut self, m: impl Into<String>) -> Self {
        self.message = m.into();
        self
    }
    pub fn label(mut self, l: impl Into<String>) -> Self {
        self.label = l.into();
        self
    }
    pub fn help(mut self, h: impl Into<String>) -> Self {
        self.help = Some(h.into());
        self
    }
    /// A related span within a few lines of the primary one (shown in the same snippet).
    fn is_near(&self, other: Span) -> bool {
        const NEAR_LINES: usize = 6;
        self.source.as_ref().is_some_and(|f| {
            let (a, b) = (f.line_col(self.span.start).0, f.line_col(other.start).0);
            a.abs_diff(b) <= NEAR_LINES
        })
    }
    pub fn related(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }
    /// Line and column of a file-level problem, when it has one.
    pub fn at_position(mut self, line: usize, column: usize) -> Self {
        self.position = Some((line, column));
        self
    }
    /// Keeps the line and column but shows none of the file's text (for a problem about a
    /// value that must not be printed, such as a secret).
    pub fn without_snippet(mut self) -> Self {
        if let Some(s) = self.source.take() {
            self.position = Some(s.line_col(self.span.start));
            self.related.clear();
        }
        self
    }
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    pub fn line_col(&self) -> (usize, usize) {
        match (&self.source, self.position) {
            (Some(s), _) => s.line_col(self.span.start),
            (None, Some(p)) => p,
            (None, None) => (1, 1),
        }
    }

    /// `file:line:col`
    pub fn location(&self) -> String {
        let (l, c) = self.line_col();
        format!("{}:{l}:{c}", self.path.display())
    }

    fn sort_key(&self) -> (PathBuf, usize, Severity, &str) {
        (
            self.path.clone(),
            self.span.start,
            self.severity,
            &self.message,
        )
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "{}: {}", self.location(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.location(), self.pointer, self.message)
        }
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        // Related places too far away to show in the snippet are named here instead.
        let far: Vec<String> = self
            .related
            .iter()
            .filter(|(s, _)| !self.is_near(*s))
            .map(|(s, l)| {
                let line = self.source.as_ref().map_or(1, |f| f.line_col(s.start).0);
                format!("{l}: line {line}")
            })
            .collect();
        match (&self.help, far.is_empty()) {
            (None, true) => None,
            (Some(h), true) => Some(Box::new(h)),
            (h, false) => Some(Box::new(format!(
                "{}{}see also {}",
                h.as_deref().unwrap_or(""),
                if h.is_some() { "\n" } else { "" },
                far.join("; ")
            ))),
        }
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| &s.text as &dyn SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.source.as_ref()?;
        let primary = LabeledSpan::new_primary_with_span(Some(self.label.clone()), self.span);
        // A label far from the primary one would make miette print every line between
        // (noise, and possibly secrets): those are named in the help instead.
        let others = self
            .related
            .iter()
            .filter(|(s, _)| self.is_near(*s))
            .map(|(s, l)| LabeledSpan::new_with_span(Some(l.clone()), *s));
        Some(Box::new(std::iter::once(primary).chain(others)))
    }
}

/// Serialisable form of a problem (`--output json`).
#[derive(Serialize)]
pub struct ProblemJson<'a> {
    pub severity: Severity,
    pub code: &'a str,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub pointer: &'a str,
    pub message: &'a str,
    pub help: Option<&'a str>,
}

impl<'a> From<&'a Problem> for ProblemJson<'a> {
    fn from(p: &'a Problem) -> Self {
        let (line, column) = p.line_col();
        ProblemJson {
            severity: p.severity,
            code: p.code,
            file: p.path.display().to_string(),
            line,
            column,
            pointer: &p.pointer,
            message: &p.message,
            help: p.help.as_deref(),
        }
    }
}

/// Every problem of one run, sorted by file and position.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, p: Problem) {
        self.0.push(p);
    }
    pub fn extend(&mut self, ps: impl IntoIterator<Item = Problem>) {
        self.0.extend(ps);
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|p| p.severity == Severity::Error)
    }
    pub fn errors(&self) -> usize {
        self.0
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }
    pub fn warnings(&self) -> usize {
        self.0.len() - self.errors()
    }
    pub fn sort(&mut self) {
        self.0.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        self.0
            .dedup_by(|a, b| a.path == b.path && a.span == b.span && a.message == b.message);
    }

    /// Renders the problems for a person, as miette reports: the first [`SHOWN`] in full,
    /// then how many more there are (every one is in `--output json`). Each report reads
    /// only a window of its file around the problem, so printing is linear in the number
    /// of problems, and a long line (a minified config) is cut around the problem.
    pub fn render(&self, color: bool) -> String {
        let handler = if color {
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode())
        } else {
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        };
        let mut out = String::new();
        for p in self.0.iter().take(SHOWN) {
            let window = p.source.as_ref().map(|f| Window::around(f, p));
            let named = NamedProblem { inner: p, window };
            let _ = handler.render_report(&mut out, &named);
        }
        if self.0.len() > SHOWN {
            out.push_str(&format!(
                "... and {} more problem(s), not shown: `--output json` lists every one\n",
                self.0.len() - SHOWN
            ));
        }
        out
    }
}

/// Problems rendered in full for a person; the rest are counted.
pub const SHOWN: usize = 50;
/// Lines of context either side of a problem.
const CONTEXT_LINES: usize = 3;
/// A line longer than this (in bytes) is cut to the problem and this much either side.
const LONG_LINE: usize = 240;
const CUT_MARGIN: usize = 80;

/// The part of a file a report shows: whole lines around the problem, or, when one of them
/// is too long, a cut of the problem's own line, with every secret value replaced by
/// `***` whatever its length. Offsets given to miette are the file's, shifted by the
/// masking before them ([`Window::masked`]); columns are the file's.
struct Window {
    name: String,
    /// The shown text, masked.
    text: String,
    /// The same part of the file, as written.
    orig: String,
    /// Byte offset of `orig` in the file.
    start: usize,
    /// The masking, relative to `start`.
    edits: Vec<Edit>,
    /// 0-based line and character column of `start` in the file.
    line: usize,
    column: usize,
    /// Cut from a long line: only the primary label fits.
    cut: bool,
}

/// One masked value: `len` bytes at `at` of the original became `with` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Edit {
    at: usize,
    len: usize,
    with: usize,
}

/// Where original offset `o` lands in the masked text (a place inside a masked value
/// lands on its start).
fn to_masked(edits: &[Edit], o: usize) -> usize {
    let mut shift: isize = 0;
    for e in edits {
        if o >= e.at + e.len {
            shift += e.with as isize - e.len as isize;
        } else if o > e.at {
            return (e.at as isize + shift) as usize;
        }
    }
    (o as isize + shift) as usize
}

/// Where masked offset `m` comes from in the original (a place inside `***` is the
/// value's start).
fn to_orig(edits: &[Edit], m: usize) -> usize {
    let mut shift: isize = 0;
    for e in edits {
        let at_m = (e.at as isize + shift) as usize;
        if m >= at_m + e.with {
            shift += e.len as isize - e.with as isize;
        } else if m > at_m {
            return e.at;
        }
    }
    (m as isize + shift) as usize
}

impl Window {
    fn around(file: &SourceFile, p: &Problem) -> Window {
        let spans = std::iter::once(p.span)
            .chain(p.related.iter().map(|(s, _)| *s).filter(|s| p.is_near(*s)));
        let (lo, hi) = spans.fold((usize::MAX, 0), |(lo, hi), s| {
            (lo.min(s.start), hi.max(s.end))
        });
        let line_of = |o: usize| file.line_col(o).0 - 1;
        let first = line_of(lo).saturating_sub(CONTEXT_LINES);
        let last = (line_of(hi) + CONTEXT_LINES).min(file.line_starts.len() - 1);
        let line_end = |l: usize| {
            file.line_starts
                .get(l + 1)
                .map_or(file.text.len(), |&s| s.saturating_sub(1))
        };
        let long = (first..=last).any(|l| line_end(l) - file.line_starts[l] > LONG_LINE);
        let name = file.path.display().to_string();
        if !long {
            let (start, end) = (file.line_starts[first], line_end(last));
            let (text, edits) = mask_secrets(&file.text[start..end]);
            return Window {
                name,
                text,
                orig: file.text[start..end].to_string(),
                start,
                edits,
                line: first,
                column: 0,
                cut: false,
            };
        }
        // The problem's own line, cut around it.
        let line = line_of(p.span.start);
        let (ls, le) = (file.line_starts[line], line_end(line));
        let mut start = p.span.start.saturating_sub(CUT_MARGIN).max(ls);
        let mut end = (p.span.end.min(p.span.start + CUT_MARGIN) + CUT_MARGIN).min(le);
        while !file.text.is_char_boundary(start) {
            start -= 1;
        }
        while !file.text.is_char_boundary(end) {
            end += 1;
        }
        // Masked as a whole line, then cut: the cut may fall inside a secret whose key is
        // outside it. A cut inside a masked value moves to its edge.
        let (masked, line_edits) = mask_secrets(&file.text[ls..le]);
        let (ms, me) = (
            to_masked(&line_edits, start - ls),
            to_masked(&line_edits, end - ls),
        );
        let start = ls + to_orig(&line_edits, ms);
        let end = (ls + to_orig(&line_edits, me)).max(start);
        let edits = line_edits
            .iter()
            .filter(|e| e.at >= start - ls && e.at < end - ls)
            .map(|e| Edit {
                at: e.at - (start - ls),
                ..*e
            })
            .collect();
        Window {
            name,
            text: masked[ms..me.max(ms)].to_string(),
            orig: file.text[start..end].to_string(),
            start,
            edits,
            line,
            column: file.text[ls..start].chars().count(),
            cut: true,
        }
    }

    /// A file offset as the masked window places it.
    fn masked(&self, offset: usize) -> usize {
        match offset.checked_sub(self.start) {
            Some(local) => self.start + to_masked(&self.edits, local.min(self.orig.len())),
            None => offset,
        }
    }
}

impl SourceCode for Window {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let offset = span
            .offset()
            .checked_sub(self.start)
            .ok_or(miette::MietteError::OutOfBounds)?;
        let local = miette::SourceSpan::new(
            offset.into(),
            span.len()
                .min(self.text.len() - offset.min(self.text.len())),
        );
        let inner = self.text.read_span(&local, before, after)?;
        // The column the file has there: counted in the original text, where a secret
        // has its own length.
        let at = inner.span().offset();
        let orig_at = to_orig(&self.edits, at).min(self.orig.len());
        let line_start = self.orig[..orig_at].rfind('\n').map_or(0, |i| i + 1);
        let column = self.orig[line_start..orig_at].chars().count()
            + if inner.line() == 0 { self.column } else { 0 };
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            miette::SourceSpan::new(
                (inner.span().offset() + self.start).into(),
                inner.span().len(),
            ),
            inner.line() + self.line,
            column,
            inner.line_count(),
        )))
    }
}

/// The text with every secret's value replaced by `***`, whatever its length, and the
/// edits that did it: a secret is never printed, nor its length. Lexical, so that it
/// holds for a file that does not parse: wherever a word holding a secret marker
/// (`token`, `password`...) is followed by `":` or `:`, the value after it is masked —
/// a string's content to its closing quote, anything else to the next `,` `}` `]` —
/// never past the end of its line.
fn mask_secrets(text: &str) -> (String, Vec<Edit>) {
    let bytes = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for marker in crate::fleet::config::SECRET_MARKERS {
        for (at, _) in lower.match_indices(marker) {
            // The rest of the key's name, then an optional closing quote and the colon.
            let mut i = at + marker.len();
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            if i < bytes.len() && bytes[i] == b'"' {
                i += 1;
            }
            while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] != b':' {
                continue;
            }
            i += 1;
            while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
                i += 1;
            }
            if let Some(r) = value_range(bytes, i) {
                ranges.push(r);
            }
        }
    }
    // Overlapping values (a secret object holding another secret) are masked as one.
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut edits = Vec::new();
    let mut at = 0;
    for (a, b) in merged {
        // Whole characters only: a value's edges are ASCII, but be sure.
        let (mut a, mut b) = (a, b);
        while !text.is_char_boundary(a) {
            a -= 1;
        }
        while !text.is_char_boundary(b) {
            b += 1;
        }
        if a < at {
            continue;
        }
        out.push_str(&text[at..a]);
        out.push_str(MASK);
        edits.push(Edit {
            at: a,
            len: b - a,
            with: MASK.len(),
        });
        at = b;
    }
    out.push_str(&text[at..]);
    (out, edits)
}

/// What a secret value is shown as.
const MASK: &str = "***";

/// The bytes of the value starting at `from` that are masked: a string's content, or a
/// whole value up to the `,` `}` `]` that ends it (see [`mask_secrets`]).
fn value_range(bytes: &[u8], from: usize) -> Option<(usize, usize)> {
    let &first = bytes.get(from)?;
    let mut i = from;
    if first == b'"' {
        i += 1;
        while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
            if bytes[i] == b'\\' && i + 1 < bytes.len() && bytes[i + 1] != b'\n' {
                i += 1;
            }
            i += 1;
        }
        return (i > from + 1).then_some((from + 1, i.min(bytes.len())));
    }
    let mut depth = 0usize;
    let mut in_string = false;
    while i < bytes.len() && bytes[i] != b'\n' {
        match bytes[i] {
            b'"' => in_string = !in_string,
            b'{' | b'[' if !in_string => depth += 1,
            b'}' | b']' if !in_string => {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            }
            b',' if !in_string && depth == 0 => break,
            _ => {}
        }
        i += 1;
    }
    // Trailing blanks stay as they are.
    let mut end = i;
    while end > from && matches!(bytes[end - 1], b' ' | b'\t' | b'\r') {
        end -= 1;
    }
    (end > from).then_some((from, end))
}

/// A problem with its window of the file, so miette prints `[file:line:col]`.
struct NamedProblem<'a> {
    inner: &'a Problem,
    window: Option<Window>,
}

impl fmt::Debug for NamedProblem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl fmt::Display for NamedProblem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.window.is_some() {
            if self.inner.pointer.is_empty() {
                f.write_str(&self.inner.message)
            } else {
                write!(f, "{}: {}", self.inner.pointer, self.inner.message)
            }
        } else if self.inner.position.is_some() {
            write!(f, "{}: {}", self.inner.location(), self.inner.message)
        } else {
            write!(f, "{}: {}", self.inner.path.display(), self.inner.message)
        }
    }
}

impl std::error::Error for NamedProblem<'_> {}

impl Diagnostic for NamedProblem<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.inner.code()
    }
    fn severity(&self) -> Option<miette::Severity> {
        self.inner.severity()
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.inner.help()
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.window.as_ref().map(|w| w as &dyn SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let labels = self.inner.labels()?;
        // A line cut to the problem holds only the primary label.
        let cut = self.window.as_ref().is_some_and(|w| w.cut);
        let window = self.window.as_ref();
        Some(Box::new(labels.filter(move |l| !cut || l.primary()).map(
            move |l| match window {
                // Placed in the masked text, where secrets are `***`.
                Some(w) => {
                    let (a, b) = (w.masked(l.offset()), w.masked(l.offset() + l.len()));
                    let span = miette::SourceSpan::new(a.into(), b.saturating_sub(a));
                    if l.primary() {
                        LabeledSpan::new_primary_with_span(l.label().map(str::to_string), span)
                    } else {
                        LabeledSpan::new_with_span(l.label().map(str::to_string), span)
                    }
                }
                None => l,
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_move_through_the_mask_and_back() {
        let text = "{\"api_token\": \"0123456789\", \"cores\": 8}";
        let (masked, edits) = mask_secrets(text);
        assert_eq!(masked, "{\"api_token\": \"***\", \"cores\": 8}");
        let eight = text.rfind('8').unwrap();
        assert_eq!(&masked[to_masked(&edits, eight)..][..1], "8");
        assert_eq!(to_orig(&edits, to_masked(&edits, eight)), eight);
        let inside = text.find("456").unwrap();
        assert_eq!(to_masked(&edits, inside), masked.find("***").unwrap());
    }

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let f = SourceFile::new("x.json", "{\n  \"é\": 1\n}".to_string());
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(2), (2, 1));
        // after the 2-byte é and its quotes: column counts characters, not bytes
        let colon = f.text.find(':').unwrap();
        assert_eq!(f.line_col(colon), (2, 6));
    }

    #[test]
    fn secrets_are_masked_in_place_in_valid_minified_and_broken_json() {
        for (text, secret) in [
            ("  \"hf_token\": \"hf_abc123\",\n", "hf_abc123"),
            (
                "{\"name\":\"x\",\"db_password\":\"pässwörd\",\"memory_mb\":\"lots\"}",
                "pässwörd",
            ),
            (
                "\"gpu\"api_token\": \"s3cr3t-value\", _assignment\"",
                "s3cr3t-value",
            ),
            (
                "\"secrets\": {\"a\": \"inner-value\"}, \"b\": 1",
                "inner-value",
            ),
            ("\"API_KEY\" : 123456789,", "123456789"),
            (
                "\"token\": \"unterminated-value\n\"next\": 1",
                "unterminated-value",
            ),
        ] {
            let (masked, _) = mask_secrets(text);
            assert!(!masked.contains(secret), "{masked}");
            assert!(masked.contains("***"), "{masked}");
        }
        let plain = "\"name\": \"vllm\", \"memory_mb\": 512";
        assert_eq!(mask_secrets(plain).0, plain);
        let next_line = "\"token\": \"a-value\n  \"name\": \"kept\"";
        assert!(mask_secrets(next_line).0.ends_with("\"name\": \"kept\""));
        // The mask says nothing of the length.
        let short = mask_secrets("\"hf_token\": \"ab\"").0;
        let long = mask_secrets(&format!("\"hf_token\": \"{}\"", "x".repeat(300))).0;
        assert_eq!(short, long);
        assert_eq!(short, "\"hf_token\": \"***\"");
    }
}
