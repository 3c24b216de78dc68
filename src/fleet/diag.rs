//! Problems a user must fix, located in the file that holds them.
//!
//! Every check (JSON syntax, schemas, the semantic rules of the config module) produces
//! [`Problem`]s; none stops at the first. A problem knows its file, byte span, JSON path,
//! what is wrong and what to do, and renders through `miette`. This module owns the
//! shape of a problem and its JSON form; it decides nothing about configs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};
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

    /// Renders every problem for a person, as miette reports.
    pub fn render(&self, color: bool) -> String {
        let handler = if color {
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode())
        } else {
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        };
        let mut out = String::new();
        for p in &self.0 {
            // Name the file in the report even when miette shows no snippet.
            let named = NamedProblem {
                inner: p,
                source: p
                    .source
                    .as_ref()
                    .map(|s| NamedSource::new(s.path.display().to_string(), s.text.clone())),
            };
            let _ = handler.render_report(&mut out, &named);
        }
        out
    }
}

/// A problem whose source carries the file name, so miette prints `[file:line:col]`.
struct NamedProblem<'a> {
    inner: &'a Problem,
    source: Option<NamedSource<String>>,
}

impl fmt::Debug for NamedProblem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl fmt::Display for NamedProblem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.source.is_some() {
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
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.inner.labels()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let f = SourceFile::new("x.json", "{\n  \"é\": 1\n}".to_string());
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(2), (2, 1));
        // after the 2-byte é and its quotes: column counts characters, not bytes
        let colon = f.text.find(':').unwrap();
        assert_eq!(f.line_col(colon), (2, 6));
    }
}
