//! A node's log for one run: `<state>/logs/<ctid>/<run>.log`, what `phoenix log` shows.
//! Every step writes its header, every host call its command line and result, hooks and
//! step scripts their output.
//!
//! Output is bounded: once the file holds [`limit`] bytes, what scripts print next is not
//! written but its tail is kept, and written when the script ends, after a line that says
//! how many bytes were dropped. phoenix's own lines are always written, each on a line of
//! its own even when a script's output did not end with a newline.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The most bytes of script output a node's log holds before output is dropped
/// (`PHOENIX_LOG_LIMIT_BYTES`, default 8 MiB).
pub fn limit() -> u64 {
    std::env::var("PHOENIX_LOG_LIMIT_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8 * 1024 * 1024)
}

/// The tail of dropped output that is kept.
const TAIL_BYTES: usize = 64 * 1024;

struct Inner {
    file: Option<File>,
    /// Bytes in the file.
    written: u64,
    limit: u64,
    /// Whether the file ends with a newline (or is empty).
    at_line_start: bool,
    /// Output not written since the limit was reached: how much, and its last bytes.
    dropped: u64,
    tail: VecDeque<u8>,
}

impl Inner {
    fn write(&mut self, bytes: &[u8]) {
        if let Some(f) = &mut self.file {
            if f.write_all(bytes).is_ok() {
                self.written += bytes.len() as u64;
                if let Some(&last) = bytes.last() {
                    self.at_line_start = last == b'\n';
                }
            }
        }
    }

    fn line(&mut self, text: &str) {
        if !self.at_line_start {
            self.write(b"\n");
        }
        self.write(text.as_bytes());
        self.write(b"\n");
    }

    fn output(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.written) as usize;
        let (now, later) = bytes.split_at(room.min(bytes.len()));
        if self.dropped == 0 {
            self.write(now);
        } else {
            self.keep(now);
        }
        if !later.is_empty() {
            self.keep(later);
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        self.dropped += bytes.len() as u64;
        self.tail.extend(bytes);
        while self.tail.len() > TAIL_BYTES {
            self.tail.pop_front();
        }
    }

    /// Writes what was kept of dropped output, after a line saying how much was dropped.
    fn flush_dropped(&mut self) {
        if self.dropped == 0 {
            return;
        }
        let kept = self.tail.len() as u64;
        let said = format!(
            "[phoenix: {} bytes of output dropped: this log keeps the first {} bytes and the last {kept}]",
            self.dropped - kept,
            self.limit
        );
        self.line(&said);
        let tail: Vec<u8> = self.tail.drain(..).collect();
        self.write(&tail);
        self.dropped = 0;
    }
}

/// A node's log; clones append to the same file and share its budget.
#[derive(Clone)]
pub struct NodeLog {
    inner: Arc<Mutex<Inner>>,
}

impl NodeLog {
    /// Opens (appending) the log at `path`; a log that cannot be written is skipped, not
    /// fatal: the build does not depend on it (the state directory is checked before a
    /// build starts).
    pub fn open(path: &Path) -> NodeLog {
        let _ = crate::os::create_dir_all(path.parent().unwrap_or(path));
        let file = OpenOptions::new().create(true).append(true).open(path).ok();
        let written = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        let at_line_start = written == 0 || ends_with_newline(path);
        NodeLog {
            inner: Arc::new(Mutex::new(Inner {
                file,
                written,
                limit: limit(),
                at_line_start,
                dropped: 0,
                tail: VecDeque::new(),
            })),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> Option<T> {
        self.inner.lock().ok().map(|mut i| f(&mut i))
    }

    /// One line of phoenix's own, on a line of its own.
    pub fn line(&mut self, text: &str) {
        self.with(|i| i.line(text));
    }

    /// Output of a script: written up to the log's limit, its tail kept past it.
    pub fn output(&self, bytes: &[u8]) {
        self.with(|i| i.output(bytes));
    }

    /// The script whose output this was has ended: what was dropped is said, and its tail
    /// written.
    pub fn end_output(&self) {
        self.with(Inner::flush_dropped);
    }
}

fn ends_with_newline(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = File::open(path) else {
        return true;
    };
    let mut last = [0u8; 1];
    f.seek(SeekFrom::End(-1)).is_err() || (f.read_exact(&mut last).is_ok() && last[0] == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with_limit(path: &Path, limit: u64) -> NodeLog {
        let log = NodeLog::open(path);
        log.with(|i| i.limit = limit);
        log
    }

    #[test]
    fn markers_start_on_their_own_line() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("n.log");
        let mut log = NodeLog::open(&p);
        log.line("== hook");
        log.output(b"no newline at the end");
        log.line("== snapshot");
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "== hook\nno newline at the end\n== snapshot\n"
        );
        // A log opened again knows how its file ends.
        log.output(b"partial");
        let mut again = NodeLog::open(&p);
        again.line("== restart");
        assert!(std::fs::read_to_string(&p)
            .unwrap()
            .ends_with("partial\n== restart\n"));
    }

    #[test]
    fn output_past_the_limit_is_dropped_but_its_tail_kept_and_counted() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("n.log");
        let mut log = log_with_limit(&p, 100);
        log.line("== hook");
        let mut flood = Vec::new();
        for i in 0..20_000 {
            flood.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        for chunk in flood.chunks(777) {
            log.output(chunk);
        }
        log.end_output();
        log.line("  hook exited with code 1");
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("== hook\nline 0\nline 1\n"),
            "{}",
            &text[..200]
        );
        let kept = TAIL_BYTES as u64;
        let dropped = flood.len() as u64 - (100 - 8) - kept;
        assert!(
            text.contains(&format!(
                "[phoenix: {dropped} bytes of output dropped: this log keeps the first 100 bytes and the last {kept}]\n"
            )),
            "{}",
            &text[..400]
        );
        assert!(text.ends_with("line 19999\n  hook exited with code 1\n"));
        assert!(text.len() < 100 + TAIL_BYTES + 200);
    }
}
