//! Rendering build events: a live display on a terminal, plain ordered lines otherwise,
//! JSON lines with `--output json`, and the closing summary. Consumes [`Event`]s only.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::build::events::{Event, NodeOutcome, Step};
use crate::engine::plan::Plan;
use crate::fleet::config::Ctid;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Live,
    Plain,
    Json,
}

#[derive(Default)]
struct Live {
    running: BTreeMap<Ctid, (String, Step, Instant)>,
    done: usize,
    total: usize,
    drawn: usize,
    finished: Vec<Event>,
}

/// Receives events from the workers (any thread) and writes them out.
pub struct Reporter {
    mode: Mode,
    live: Arc<Mutex<Live>>,
    stop: Arc<Mutex<bool>>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

fn outcome_word(o: NodeOutcome) -> &'static str {
    match o {
        NodeOutcome::Built => "done",
        NodeOutcome::Fresh => "fresh",
        NodeOutcome::Failed => "FAILED",
        NodeOutcome::Held => "held",
        NodeOutcome::Blocked => "blocked",
        NodeOutcome::Unmanaged => "UNMANAGED",
        NodeOutcome::Cancelled => "cancelled",
        NodeOutcome::Skipped => "skipped",
        NodeOutcome::Pinned => "pinned",
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

impl Reporter {
    pub fn new(mode: Mode) -> Reporter {
        let live = Arc::new(Mutex::new(Live::default()));
        let stop = Arc::new(Mutex::new(false));
        let ticker = (mode == Mode::Live).then(|| {
            let (live, stop) = (live.clone(), stop.clone());
            std::thread::spawn(move || loop {
                std::thread::sleep(Duration::from_millis(200));
                if stop.lock().map(|s| *s).unwrap_or(true) {
                    return;
                }
                if let Ok(mut l) = live.lock() {
                    redraw(&mut l);
                }
            })
        });
        Reporter {
            mode,
            live,
            stop,
            ticker,
        }
    }

    pub fn event(&self, e: &Event) {
        match self.mode {
            Mode::Json => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", json_line(e));
                let _ = out.flush();
            }
            Mode::Plain => {
                if let Some(line) = plain_line(e) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            }
            Mode::Live => {
                let Ok(mut l) = self.live.lock() else { return };
                match e {
                    Event::RunStarted { total, .. } => l.total = *total,
                    Event::NodeStarted { ctid, name, .. } => {
                        l.running
                            .insert(*ctid, (name.clone(), Step::Preflight, Instant::now()));
                    }
                    Event::StepStarted { ctid, step } => {
                        if let Some(r) = l.running.get_mut(ctid) {
                            r.1 = *step;
                        }
                    }
                    Event::NodeFinished { ctid, outcome, .. } => {
                        if l.running.remove(ctid).is_some() || *outcome == NodeOutcome::Blocked {
                            if matches!(
                                outcome,
                                NodeOutcome::Built | NodeOutcome::Failed | NodeOutcome::Blocked
                            ) {
                                l.done += 1;
                            }
                            l.finished.push(e.clone());
                        }
                    }
                    Event::Retry { .. } | Event::StaleLock { .. } => l.finished.push(e.clone()),
                    Event::RunFinished { .. } => {}
                }
                redraw(&mut l);
            }
        }
    }

    pub fn finish(mut self) {
        if let Ok(mut s) = self.stop.lock() {
            *s = true;
        }
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        if self.mode == Mode::Live {
            if let Ok(mut l) = self.live.lock() {
                // Leave finished lines only: the summary follows.
                l.running.clear();
                l.total = 0;
                redraw(&mut l);
            }
        }
    }
}

fn redraw(l: &mut Live) {
    let mut out = std::io::stderr().lock();
    // Erase the live area, print finished lines above it, draw it again.
    for _ in 0..l.drawn {
        let _ = write!(out, "\x1b[1A\x1b[2K");
    }
    for e in l.finished.drain(..) {
        if let Some(line) = plain_line(&e) {
            let _ = writeln!(out, "{line}");
        }
    }
    let mut drawn = 0;
    for (ctid, (name, step, since)) in &l.running {
        let _ = writeln!(
            out,
            "  {ctid:>9} {name:<24} {:<11} {:>6.1}s",
            step.name(),
            since.elapsed().as_secs_f64()
        );
        drawn += 1;
    }
    if l.total > 0 {
        let _ = writeln!(
            out,
            "[{}/{}] building, {} running",
            l.done,
            l.total,
            l.running.len()
        );
        drawn += 1;
    }
    l.drawn = drawn;
    let _ = out.flush();
}

/// The plain-text line of an event (`None`: not shown without a terminal).
pub fn plain_line(e: &Event) -> Option<String> {
    Some(match e {
        Event::RunStarted {
            run,
            backend,
            jobs,
            total,
        } => {
            format!("phoenix build {run}: {total} node(s) to build on {backend}, {jobs} worker(s)")
        }
        Event::NodeStarted { ctid, name, action } => {
            format!("{ctid:>9} {name:<24} {action} started")
        }
        Event::StepStarted { .. } => return None,
        Event::StaleLock { ctid, lock } => {
            format!("{ctid:>9} removed stale lock '{lock}' (left by an interrupted run)")
        }
        Event::Retry {
            ctid,
            step,
            attempt,
            delay_ms,
            error,
        } => {
            format!(
                "{ctid:>9} retry {} (attempt {attempt}, in {delay_ms} ms): {error}",
                step.name()
            )
        }
        Event::NodeFinished {
            ctid,
            name,
            action,
            outcome,
            elapsed_ms,
            failed_step,
            error,
            blocked_by,
            ..
        } => match outcome {
            NodeOutcome::Built => format!(
                "{ctid:>9} {name:<24} {action} done in {}",
                secs(*elapsed_ms)
            ),
            NodeOutcome::Failed => format!(
                "{ctid:>9} {name:<24} FAILED at {} after {}: {}",
                failed_step.map_or("?", |s| s.name()),
                secs(*elapsed_ms),
                error.as_deref().unwrap_or("")
            ),
            NodeOutcome::Blocked => format!(
                "{ctid:>9} {name:<24} blocked by {}",
                blocked_by.map_or("?".into(), |b| b.to_string())
            ),
            NodeOutcome::Fresh => return None,
            o => format!("{ctid:>9} {name:<24} {}", outcome_word(*o)),
        },
        Event::RunFinished { .. } => return None,
    })
}

/// The closing summary for people: counts, then failures root cause first, with the
/// command that shows each log; then held nodes and how to consent.
pub fn summary(events: &[Event], plan: &Plan) -> String {
    let why = |ctid: Ctid| {
        plan.entry(ctid)
            .map(|e| super::plan::reason(e, plan))
            .unwrap_or_default()
    };
    let mut out = String::new();
    let mut failed = Vec::new();
    let mut blocked: BTreeMap<Ctid, Vec<Ctid>> = BTreeMap::new();
    let mut held = Vec::new();
    let mut unmanaged = Vec::new();
    let mut pinned = Vec::new();
    let mut actions: BTreeMap<String, usize> = BTreeMap::new();
    for e in events {
        if let Event::NodeFinished {
            ctid,
            name,
            action,
            outcome,
            failed_step,
            error,
            output,
            blocked_by,
            ..
        } = e
        {
            match outcome {
                NodeOutcome::Built => *actions.entry(action.clone()).or_insert(0) += 1,
                NodeOutcome::Fresh => *actions.entry("fresh".into()).or_insert(0) += 1,
                NodeOutcome::Failed => failed.push((
                    *ctid,
                    name.clone(),
                    *failed_step,
                    error.clone(),
                    output.clone(),
                )),
                NodeOutcome::Blocked => blocked
                    .entry(blocked_by.unwrap_or(0))
                    .or_default()
                    .push(*ctid),
                NodeOutcome::Held => held.push((*ctid, why(*ctid))),
                NodeOutcome::Unmanaged => unmanaged.push((*ctid, why(*ctid))),
                NodeOutcome::Cancelled => *actions.entry("cancelled".into()).or_insert(0) += 1,
                NodeOutcome::Skipped => *actions.entry("skipped".into()).or_insert(0) += 1,
                NodeOutcome::Pinned => pinned.push((*ctid, why(*ctid))),
            }
        }
    }
    let mut parts: Vec<String> = [
        "create",
        "rebuild",
        "update",
        "migrate",
        "fresh",
        "cancelled",
        "skipped",
    ]
    .iter()
    .filter_map(|a| {
        actions.get(*a).map(|n| {
            format!(
                "{n} {}",
                if *a == "create" {
                    "created"
                } else if *a == "rebuild" {
                    "rebuilt"
                } else if *a == "update" {
                    "updated"
                } else if *a == "migrate" {
                    "migrated"
                } else {
                    a
                }
            )
        })
    })
    .collect();
    for (word, n) in [
        ("failed", failed.len()),
        ("held", held.len()),
        ("blocked", blocked.values().map(Vec::len).sum()),
        ("unmanaged", unmanaged.len()),
        ("pinned", pinned.len()),
    ] {
        if n > 0 {
            parts.push(format!("{n} {word}"));
        }
    }
    let elapsed = events.iter().find_map(|e| match e {
        Event::RunFinished { elapsed_ms, .. } => Some(*elapsed_ms),
        _ => None,
    });
    out.push_str(&format!(
        "summary: {}{}\n",
        if parts.is_empty() {
            "nothing to do".into()
        } else {
            parts.join(", ")
        },
        elapsed.map_or(String::new(), |ms| format!(" in {}", secs(ms)))
    ));
    for (ctid, name, step, error, output) in &failed {
        out.push_str(&format!(
            "  ✗ {ctid} {name}: failed at {}: {}\n",
            step.map_or("?", |s| s.name()),
            error.as_deref().unwrap_or("")
        ));
        if !output.is_empty() {
            out.push_str("      its last output:\n");
            for line in output {
                out.push_str(&format!("        {line}\n"));
            }
        }
        if let Some(b) = blocked.get(ctid) {
            out.push_str(&format!(
                "      blocked by it: {}\n",
                b.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
        out.push_str(&format!("      log: phoenix log {ctid}\n"));
    }
    for (ctid, why) in &unmanaged {
        out.push_str(&format!("  ✗ {ctid}: {why}\n"));
        if let Some(b) = blocked.get(ctid) {
            out.push_str(&format!(
                "      blocked by it: {}\n",
                b.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for (ctid, why) in &pinned {
        out.push_str(&format!("  📌 {ctid}: {why}\n"));
    }
    for (ctid, why) in &held {
        out.push_str(&format!("  ⏸ {ctid}: {why}\n"));
        if let Some(b) = blocked.get(ctid) {
            out.push_str(&format!(
                "      waiting with it: {}\n",
                b.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    out
}

/// One JSON line: the event plus the schema version.
pub fn json_line(event: &Event) -> String {
    let mut v = serde_json::to_value(event).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("schema_version".into(), super::JSON_SCHEMA_VERSION.into());
    }
    v.to_string()
}
