//! What can stop a command, as types: each error says what happened, carries a help line
//! with what to do, and maps to its exit code here and nowhere else. Reported as a miette
//! diagnostic on stderr, and as one JSON object on stdout under `--output json`: the error
//! document (`schemas/output/error.schema.json`), which an invalid configuration and a
//! command line clap rejects also get.

use std::path::PathBuf;

use miette::Diagnostic;
use serde::Serialize;

use crate::build::RunError;
use crate::exit;
use crate::fleet::config::Ctid;
use crate::fleet::diag::{ProblemJson, Problems};
use crate::host::HostError;

#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum Error {
    #[error("{0}")]
    #[diagnostic(help(
        "point --state-dir (PHOENIX_STATE_DIR) at a directory phoenix may write, or run as root"
    ))]
    StateDir(String),

    #[error("{0}")]
    #[diagnostic(help(
        "the message says what to fix; README \"Running phoenix from a workstation or CI\" sets up the API token or user, the certificate and SSH"
    ))]
    Api(String),

    #[error("{0}")]
    #[diagnostic(help("--backend sim runs everything on the embedded simulated host"))]
    Backend(String),

    #[error("cannot read the host: {0}")]
    #[diagnostic(help("{}", host_help(.0)))]
    ReadHost(HostError),

    #[error(transparent)]
    #[diagnostic(help("{}", run_help(.0)))]
    Run(RunError),

    #[error("{holder} is building on the {what}: it holds the lock {}", .lock.display())]
    #[diagnostic(help("wait for it to finish, or pass --wait to queue behind it"))]
    Locked {
        holder: String,
        /// The host or state directory the lock keeps to one run.
        what: String,
        lock: PathBuf,
    },

    #[error("cannot take the host lock {}: {message}", .lock.display())]
    #[diagnostic(help("check that the state directory is writable"))]
    LockIo { lock: PathBuf, message: String },

    #[error("CT {} not defined in {}", join(.ctids), .file.display())]
    #[diagnostic(help("defined: {defined}"))]
    NotInConfig {
        ctids: Vec<Ctid>,
        file: PathBuf,
        defined: String,
    },

    #[error("cannot read {}: {message}", .path.display())]
    #[diagnostic(help("{help}"))]
    Read {
        path: PathBuf,
        message: String,
        help: String,
    },

    #[error("{message}")]
    #[diagnostic(help("{help}"))]
    Rollback {
        message: String,
        help: String,
        /// Refused for want of `--force` (exit 4), not for a wrong request (exit 2).
        consent: bool,
    },

    #[error("{option}: {message}")]
    #[diagnostic(help("see `phoenix help` for the option's format"))]
    Usage {
        option: &'static str,
        message: String,
    },

    /// The configuration does not fit the host (a `node` the cluster does not have):
    /// found once the host is known, before anything changes.
    #[error("the configuration has {} error{} for this host; nothing was touched", .0.errors(), if .0.errors() == 1 { "" } else { "s" })]
    #[diagnostic(help(
        "fix each problem in `problems`; `phoenix validate` shows them at their lines"
    ))]
    InvalidConfig(Box<Problems>),
}

fn join(ctids: &[Ctid]) -> String {
    ctids
        .iter()
        .map(Ctid::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn host_help(e: &HostError) -> &'static str {
    use crate::host::ErrorKind;
    match e.kind {
        ErrorKind::Locked | ErrorKind::LockTimeout => {
            "another task holds a CT's lock; run again when it is done"
        }
        _ => "check that the backend can reach the host (--backend, PHOENIX_BACKEND)",
    }
}

fn run_help(e: &RunError) -> String {
    match e {
        RunError::ReadHost(h) => host_help(h).to_string(),
        RunError::InitialSetup(_) => {
            "fix phoenix_hypervisor_initial_setup.sh (it runs before every build that has work, so it must be idempotent) and build again".to_string()
        }
        RunError::StaleLock { ctid, .. } => {
            format!("check what holds CT {ctid}; `pct unlock {ctid}` removes the lock")
        }
        RunError::StateDir(_) => {
            "make the state directory (--state-dir, PHOENIX_STATE_DIR) writable, or move aside what is in the way; `phoenix plan` checks it".to_string()
        }
        RunError::Store(_) => {
            "give proxmox_defaults.store_vmid_range VMIDs no other guest uses and enough of them (or remove it to clone in full); `phoenix plan` checks it".to_string()
        }
    }
}

impl Error {
    /// The process exit code (see [`crate::exit`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::StateDir(_)
            | Error::Backend(_)
            | Error::Api(_)
            | Error::ReadHost(_)
            | Error::Run(_)
            | Error::LockIo { .. }
            | Error::Read { .. } => exit::HOST,
            Error::Locked { .. } => exit::LOCKED,
            Error::NotInConfig { .. } => exit::NOT_FOUND,
            Error::Usage { .. } => exit::USAGE,
            Error::Rollback { consent: true, .. } => exit::HELD,
            Error::Rollback { .. } => exit::USAGE,
            Error::InvalidConfig(_) => exit::INVALID_CONFIG,
        }
    }

    /// A stable name for scripts: the variant in snake case.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::StateDir(_) => "state_dir",
            Error::Backend(_) => "backend",
            Error::Api(_) => "api",
            Error::ReadHost(_) => "read_host",
            Error::Run(_) => "run",
            Error::Locked { .. } => "locked",
            Error::LockIo { .. } => "lock_io",
            Error::NotInConfig { .. } => "not_in_config",
            Error::Read { .. } => "read",
            Error::Usage { .. } => "usage",
            Error::Rollback { .. } => "rollback",
            Error::InvalidConfig(_) => "invalid_config",
        }
    }
}

/// `--output json`'s document for a command that failed.
#[derive(Serialize)]
struct Failure<'a> {
    schema_version: u32,
    error: ErrorJson<'a>,
    /// Every problem of an invalid configuration (kind `invalid_config` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    problems: Option<Vec<ProblemJson<'a>>>,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    kind: &'a str,
    message: String,
    help: Option<String>,
    exit_code: i32,
}

impl Failure<'_> {
    /// Prints the document on one line: one JSON document, and under `build` also a valid
    /// (last) JSON line.
    fn print(&self) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, self);
        let _ = writeln!(out);
        let _ = out.flush();
    }
}

/// The error document of a command other than `validate` that found the configuration
/// invalid (exit code 3).
pub fn report_invalid_config(problems: &Problems, message: String) {
    Failure {
        schema_version: crate::render::JSON_SCHEMA_VERSION,
        error: ErrorJson {
            kind: "invalid_config",
            message,
            help: Some(
                "fix each problem in `problems`; `phoenix validate` shows them at their lines"
                    .to_string(),
            ),
            exit_code: exit::INVALID_CONFIG,
        },
        problems: Some(problems.0.iter().map(ProblemJson::from).collect()),
    }
    .print();
}

/// The error document of a command line clap rejected (its own message is on stderr).
pub fn report_usage(clap_message: &str) {
    let first = clap_message.lines().next().unwrap_or_default();
    Failure {
        schema_version: crate::render::JSON_SCHEMA_VERSION,
        error: ErrorJson {
            kind: "usage",
            message: first.strip_prefix("error: ").unwrap_or(first).to_string(),
            help: Some(
                "`phoenix help` (or `phoenix <command> --help`) shows the command line".to_string(),
            ),
            exit_code: exit::USAGE,
        },
        problems: None,
    }
    .print();
}

/// Tells the user, and returns the exit code.
pub fn report(e: &Error, json: bool, color: bool) -> i32 {
    if let Error::InvalidConfig(problems) = e {
        eprint!("{}", problems.render(color));
        eprintln!("error: {e}");
        if json {
            report_invalid_config(problems, e.to_string());
        }
        return e.exit_code();
    }
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let mut text = String::new();
    let _ = miette::GraphicalReportHandler::new_themed(theme).render_report(&mut text, e);
    eprint!("{text}");
    if json {
        Failure {
            schema_version: crate::render::JSON_SCHEMA_VERSION,
            error: ErrorJson {
                kind: e.kind(),
                message: e.to_string(),
                help: e.help().map(|h| h.to_string()),
                exit_code: e.exit_code(),
            },
            problems: None,
        }
        .print();
    }
    e.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::ErrorKind;

    #[test]
    fn every_error_names_what_to_do() {
        let host = HostError::new(ErrorKind::Failed, "pct: not found");
        let errors = [
            Error::StateDir("cannot create /x".into()),
            Error::Backend("no".into()),
            Error::ReadHost(host.clone()),
            Error::Run(RunError::ReadHost(host)),
            Error::Locked {
                holder: "phoenix build (pid 1)".into(),
                what: "state directory /s".into(),
                lock: "/s/phoenix.lock".into(),
            },
            Error::NotInConfig {
                ctids: vec![123, 124],
                file: "/etc/x.json".into(),
                defined: "900, 901".into(),
            },
            Error::Usage {
                option: "--older-than",
                message: "bad".into(),
            },
            Error::Api("no".into()),
        ];
        for e in &errors {
            assert!(e.help().is_some(), "{e}");
            assert_ne!(e.exit_code(), exit::OK);
        }
        assert_eq!(
            errors[5].to_string(),
            "CT 123, 124 not defined in /etc/x.json"
        );
        assert_eq!(errors[4].exit_code(), exit::LOCKED);
        assert_eq!(errors[6].exit_code(), exit::USAGE);
    }
}
