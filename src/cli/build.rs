//! `phoenix build`.

use std::sync::Mutex;

use super::*;
use crate::build::events::Event;
use crate::build::BuildOptions;
use crate::render::report::{self, Mode, Reporter};

/// The main log's default: the original orchestrator's on Proxmox, the state directory's
/// elsewhere.
fn default_log_file(cli: &Cli) -> PathBuf {
    match cli.backend {
        crate::host::Backend::Pve => PathBuf::from("/var/log/phoenix_hypervisor.log"),
        _ => cli.state_dir.join("phoenix.log"),
    }
}

/// The main log: one timestamped line per event of every run, appended (never
/// truncated). A log that cannot be opened is a warning, not a reason to stop.
struct MainLog(Option<Mutex<std::fs::File>>);

impl MainLog {
    fn open(path: &std::path::Path) -> MainLog {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => MainLog(Some(Mutex::new(f))),
            Err(e) => {
                tracing::warn!("cannot append to the main log {}: {e}", path.display());
                MainLog(None)
            }
        }
    }
    fn line(&self, run: &str, text: &str) {
        if let Some(Ok(mut f)) = self.0.as_ref().map(|m| m.lock()) {
            let stamp = crate::os::rfc3339(now_secs());
            for l in text.lines() {
                let _ = writeln!(f, "{stamp} {run} {l}");
            }
        }
    }
}

pub fn build(
    cli: &Cli,
    fleet: &Fleet,
    unpin: &[Ctid],
    opts: &BuildOptions,
    wait: bool,
    log_file: Option<&std::path::Path>,
) -> Result<i32, Error> {
    let mut named = opts.targets.clone();
    named.extend(opts.consent.replace.iter().copied());
    named.extend(opts.consent.drop_snapshots.iter().copied());
    named.extend(unpin.iter().copied());
    check_targets(fleet, &named)?;
    let state = open_state(cli)?;
    let host = open_placed_host(cli, fleet)?;
    let _locks = lock_host(&state, host.as_ref(), "build", wait)?;
    for &ctid in unpin {
        state
            .remove_pin(ctid)
            .map_err(|e| Error::StateDir(format!("cannot remove the pin of CT {ctid}: {e}")))?;
    }
    let mode = match cli.output {
        Output::Json => Mode::Json,
        Output::Human
            if std::io::stderr().is_terminal()
                && !dumb_terminal()
                && std::env::var_os("PHOENIX_NO_LIVE").is_none() =>
        {
            Mode::Live
        }
        Output::Human => Mode::Plain,
    };
    let reporter = Reporter::new(mode);
    let events: Mutex<Vec<Event>> = Mutex::new(Vec::new());
    let run_id = crate::os::run_id(now_secs(), std::process::id());
    let main_log = MainLog::open(&log_file.map_or_else(|| default_log_file(cli), PathBuf::from));
    let emit = |e: Event| {
        if let Some(line) = report::plain_line(&e) {
            main_log.line(&run_id, &line);
        }
        reporter.event(&e);
        if let Ok(mut v) = events.lock() {
            v.push(e);
        }
    };
    // Ctrl-C or SIGTERM stops the run cleanly; a second one ends it at once.
    if let Err(e) = crate::build::cancel::install() {
        tracing::warn!("cannot handle SIGINT/SIGTERM: {e}");
    }
    let result = crate::build::run(fleet, host.as_ref(), &state, opts, &run_id, &emit);
    reporter.finish();
    if let Some(sig) = crate::build::cancel::requested() {
        let said = format!(
            "interrupted by {}: nothing new was started, running hooks were stopped",
            crate::build::cancel::name(sig)
        );
        main_log.line(&run_id, &said);
        eprintln!("{said}");
    }
    match result {
        Ok(r) => {
            if cli.output == Output::Human {
                print!(
                    "{}",
                    report::summary(
                        &events.lock().map(|v| v.clone()).unwrap_or_default(),
                        &r.plan
                    )
                );
            }
            Ok(r.exit_code)
        }
        Err(e) => Err(Error::Run(e)),
    }
}
