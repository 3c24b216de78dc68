//! `phoenix build`.

use std::sync::Mutex;

use super::*;
use crate::build::events::Event;
use crate::build::BuildOptions;
use crate::render::report::{self, Mode, Reporter};

pub fn build(cli: &Cli, fleet: &Fleet, opts: &BuildOptions, wait: bool) -> Result<i32, Error> {
    let mut named = opts.targets.clone();
    named.extend(opts.consent.replace.iter().copied());
    check_targets(fleet, &named)?;
    let (state, _lock) = lock_host(cli, "build", wait)?;
    let host = open_host(cli)?;
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
    let emit = |e: Event| {
        reporter.event(&e);
        if let Ok(mut v) = events.lock() {
            v.push(e);
        }
    };
    let run_id = crate::os::run_id(now_secs(), std::process::id());
    // Ctrl-C or SIGTERM stops the run cleanly; a second one ends it at once.
    if let Err(e) = crate::build::cancel::install() {
        tracing::warn!("cannot handle SIGINT/SIGTERM: {e}");
    }
    let result = crate::build::run(fleet, host.as_ref(), &state, opts, &run_id, &emit);
    reporter.finish();
    if let Some(sig) = crate::build::cancel::requested() {
        eprintln!(
            "interrupted by {}: nothing new was started, running hooks were stopped",
            crate::build::cancel::name(sig)
        );
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
