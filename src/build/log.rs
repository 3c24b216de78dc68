//! A node's log for one run: `<state>/logs/<ctid>/<run>.log`, what `phoenix log` shows.
//! Every step writes its header, every host call its command line and result, hooks and
//! step scripts their output.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

pub struct NodeLog {
    file: Option<File>,
}

impl NodeLog {
    /// Opens (appending) the log at `path`; a log that cannot be written is skipped, not
    /// fatal: the build does not depend on it.
    pub fn open(path: &Path) -> NodeLog {
        let _ = fs::create_dir_all(path.parent().unwrap_or(path));
        NodeLog {
            file: OpenOptions::new().create(true).append(true).open(path).ok(),
        }
    }
    pub fn line(&mut self, text: &str) {
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "{text}");
        }
    }
    pub fn bytes(&mut self, bytes: &[u8]) {
        if let Some(f) = &mut self.file {
            let _ = f.write_all(bytes);
        }
    }
    /// A second handle on the log, for a thread to append to.
    pub fn writer(&self) -> Box<dyn Write + Send> {
        match self.file.as_ref().and_then(|f| f.try_clone().ok()) {
            Some(f) => Box::new(f),
            None => Box::new(std::io::sink()),
        }
    }
    /// A handle for a child process's output.
    pub fn stdio(&self) -> std::process::Stdio {
        self.file
            .as_ref()
            .and_then(|f| f.try_clone().ok())
            .map_or_else(std::process::Stdio::null, std::process::Stdio::from)
    }
}
