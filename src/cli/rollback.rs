//! `phoenix rollback` and `phoenix unpin`: put a CT back to one of its generations and
//! hold it there, and give it back to builds.
//!
//! A rollback is one pinned change: the pin is recorded (unfinished) before the host is
//! touched, and completed when the CT is back at the generation. A rollback cut short
//! leaves a CT that `plan` calls pinned and unfinished, never one that looks built as
//! something it is not; running the same rollback again finishes it.

use super::*;
use crate::engine::snapshot::{self, current_build, BuildRecord};
use crate::host::CtInfo;
use crate::state::Pin;

pub struct RollbackArgs {
    pub ctid: Ctid,
    pub to: Option<String>,
    pub steps: Option<usize>,
    pub dry_run: bool,
    pub force: bool,
    pub wait: bool,
}

/// What a rollback does, decided before it does anything.
struct RollbackPlan {
    ctid: Ctid,
    /// The generation the CT holds now, if it has one.
    from: Option<String>,
    to: String,
    /// Newer snapshots the host must delete first (ZFS rolls back only to the most
    /// recent one).
    deletes: Vec<String>,
    was_running: bool,
    /// The generation is not on the CT but kept apart (the CT was replaced since): it is
    /// restored from there, and the CT as it is now is kept first.
    restore: Option<crate::state::Kept>,
}

/// A generation a CT can go back to: one of its snapshots, or one kept when it was
/// replaced.
enum Generation {
    OnHost(crate::host::SnapshotInfo),
    Kept(crate::state::Kept),
}

impl Generation {
    fn name(&self) -> &str {
        match self {
            Generation::OnHost(s) => &s.name,
            Generation::Kept(k) => &k.snapshot,
        }
    }
    fn description(&self) -> &str {
        match self {
            Generation::OnHost(s) => &s.description,
            Generation::Kept(k) => &k.description,
        }
    }
}

/// A CT's generations, newest first: its snapshots from the current state back, then
/// those kept apart that it no longer holds.
fn generations(state: &StateDir, ctid: Ctid, ct: Option<&CtInfo>) -> Vec<Generation> {
    let mut out: Vec<Generation> = ct
        .map(|ct| {
            snapshot::generations(ct)
                .into_iter()
                .cloned()
                .map(Generation::OnHost)
                .collect()
        })
        .unwrap_or_default();
    for k in state.kept(ctid) {
        if !out.iter().any(|g| g.name() == k.snapshot) {
            out.push(Generation::Kept(k));
        }
    }
    out
}

fn refused(message: String, help: impl Into<String>) -> Error {
    Error::Rollback {
        message,
        help: help.into(),
        consent: false,
    }
}

/// Who is running phoenix, for the pin's record.
fn who() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        // SAFETY: getuid(2) has no preconditions.
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }))
}

/// The generation to go back to, and the snapshots that must go first.
fn decide(
    state: &StateDir,
    host: &dyn Host,
    ctid: Ctid,
    ct: Option<&CtInfo>,
    args: &RollbackArgs,
) -> Result<(RollbackPlan, Generation), Error> {
    let mut gens = generations(state, ctid, ct);
    let current = ct.and_then(current_build).map(|s| s.name.clone());
    let listed = |gens: &[Generation]| {
        let names: Vec<&str> = gens.iter().map(Generation::name).collect();
        if names.is_empty() {
            "it has none".to_string()
        } else {
            format!("its generations, newest first: {}", names.join(", "))
        }
    };
    let index = match (&args.to, args.steps) {
        (Some(name), _) => match gens.iter().position(|g| g.name() == name) {
            Some(i) => i,
            None => {
                let message = match state.removed(ctid, name) {
                    Some(r) => format!(
                        "{name} of CT {ctid} was removed by `phoenix gc` on {} UTC",
                        crate::os::utc(r.removed_at)
                    ),
                    None => format!("{name} is not a generation of CT {ctid}"),
                };
                return Err(refused(
                    message,
                    format!("`phoenix generations {ctid}` lists {}", listed(&gens)),
                ));
            }
        },
        (None, steps) => {
            let steps = steps.unwrap_or(1);
            let at = current
                .as_deref()
                .and_then(|c| gens.iter().position(|g| g.name() == c))
                .unwrap_or(0);
            if at + steps >= gens.len() {
                let before = gens.len().saturating_sub(at + 1);
                return Err(refused(
                    format!(
                        "CT {ctid} has {before} generation{} before its current one, not {steps}",
                        plural(before)
                    ),
                    format!("`phoenix generations {ctid}` lists {}", listed(&gens)),
                ));
            }
            at + steps
        }
    };
    let target = gens.swap_remove(index);
    let (deletes, restore) = match (&target, ct) {
        (Generation::OnHost(s), Some(ct)) if !host.rollback_keeps_newer() => {
            (newer_than(ct, &s.name), None)
        }
        (Generation::OnHost(_), _) => (Vec::new(), None),
        (Generation::Kept(k), _) => (Vec::new(), Some(k.clone())),
    };
    Ok((
        RollbackPlan {
            ctid,
            from: current,
            to: target.name().to_string(),
            deletes,
            was_running: ct.is_some_and(|c| c.running),
            restore,
        },
        target,
    ))
}

/// The snapshots taken after `name`, newest first: those taken later, and those on the
/// chain above it (snapshot times have one-second resolution; the chain does not).
fn newer_than(ct: &CtInfo, name: &str) -> Vec<String> {
    let Some(target) = ct.snapshot(name) else {
        return Vec::new();
    };
    let mut chain: Vec<String> = Vec::new();
    let mut cur = ct.parent_snapshot.as_deref();
    while let Some(s) = cur.and_then(|n| ct.snapshot(n)) {
        if s.name == name || chain.contains(&s.name) {
            break;
        }
        chain.push(s.name.clone());
        cur = s.parent.as_deref();
    }
    let mut later: Vec<&crate::host::SnapshotInfo> = ct
        .snapshots
        .iter()
        .filter(|s| s.snaptime > target.snaptime && !chain.contains(&s.name))
        .collect();
    later.sort_by_key(|s| std::cmp::Reverse(s.snaptime));
    let mut out = chain;
    out.extend(later.into_iter().map(|s| s.name.clone()));
    out
}

pub fn rollback(cli: &Cli, fleet: &Fleet, args: &RollbackArgs) -> Result<i32, Error> {
    check_targets(fleet, &[args.ctid])?;
    let ctid = args.ctid;
    let state = open_state(cli)?;
    let host = open_host(cli)?;
    let _locks = lock_host(&state, host.as_ref(), "rollback", args.wait)?;
    let ct = match host.ct(ctid).map_err(Error::ReadHost)? {
        Some(ct) if ct.is_managed() => Some(ct),
        Some(_) => {
            return Err(refused(
                format!(
                    "CT {ctid} was not created by phoenix: it has no generations to go back to"
                ),
                "phoenix never changes a CT without its `phoenix` tag",
            ))
        }
        None if !state.kept(ctid).is_empty() => None,
        None => {
            return Err(refused(
                format!(
                    "CT {ctid} is not on the host and has no kept generation: nothing to roll back"
                ),
                format!("`phoenix build {ctid}` creates it"),
            ))
        }
    };
    let (mut plan, target) = decide(&state, host.as_ref(), ctid, ct.as_ref(), args)?;
    // A rollback cut short after it stopped the CT starts it again when finished.
    if let Some(earlier) = state.pins().remove(&ctid).filter(|p| !p.complete) {
        plan.was_running |= earlier.restart;
        plan.from = plan.from.or(earlier.from);
    }
    if !plan.deletes.is_empty() && !args.force && !args.dry_run {
        return Err(Error::Rollback {
            message: format!(
                "rolling CT {ctid} back to {} deletes the newer snapshot{} {} first: the {} host rolls back only to the most recent snapshot",
                plan.to,
                plural(plan.deletes.len()),
                plan.deletes.join(", "),
                host.name()
            ),
            help: format!(
                "`phoenix rollback {ctid} --to {} --force` deletes them; `--dry-run` shows the whole rollback",
                plan.to
            ),
            consent: true,
        });
    }
    let record = |complete: bool| Pin {
        snapshot: plan.to.clone(),
        hash: BuildRecord::parse(target.description()).hash,
        pinned_at: now_secs(),
        by: who(),
        from: plan.from.clone(),
        complete,
        restart: plan.was_running,
    };
    if args.dry_run {
        report(cli, &plan, None, true);
        return Ok(if plan.deletes.is_empty() || args.force {
            exit::OK
        } else {
            exit::HELD
        });
    }
    let io =
        |e: std::io::Error| Error::StateDir(format!("cannot record the pin of CT {ctid}: {e}"));
    // The pin first: from here on, builds leave the CT alone.
    state.write_pin(ctid, &record(false)).map_err(io)?;
    let host_step = |what: String, r: crate::host::HostResult<()>| {
        r.map_err(|e| Error::Rollback {
            message: format!("the rollback of CT {ctid} stopped at {what}: {e}"),
            help: format!(
                "the CT stays pinned (unfinished); fix the cause and run `phoenix rollback {ctid} --to {} --force` again",
                plan.to
            ),
            consent: false,
        })
    };
    if ct.as_ref().is_some_and(|c| c.running) {
        host_step(format!("`shutdown {ctid}`"), host.shutdown(ctid, 60))?;
    }
    for s in &plan.deletes {
        host_step(
            format!("`delsnapshot {ctid} {s}`"),
            host.delete_snapshot(ctid, s),
        )?;
    }
    match &plan.restore {
        None => host_step(
            format!("`rollback {ctid} {}`", plan.to),
            host.rollback(ctid, &plan.to),
        )?,
        Some(kept) => {
            // The CT as it is now is a generation too: kept before the restore replaces it.
            if let Some(ct) = &ct {
                crate::build::steps::keep_generation(
                    host.as_ref(),
                    &state,
                    fleet,
                    ct,
                    "rolled back",
                )
                .map_err(|e| Error::Rollback {
                    message: format!(
                        "cannot keep CT {ctid}'s current generation before restoring {}: {e}",
                        plan.to
                    ),
                    help: "nothing was replaced; fix the cause (the backup storage) and run the rollback again".to_string(),
                    consent: false,
                })?;
            }
            let pool = &fleet.nodes[&ctid].spec.storage_pool;
            host_step(
                format!("`pct restore {ctid} {}`", kept.copy.location),
                host.restore(ctid, &kept.copy, pool),
            )?;
            // Back as the generation it was: its build snapshot, with its record.
            host_step(
                format!("`snapshot {ctid} {}`", plan.to),
                host.snapshot(ctid, &plan.to, &kept.description),
            )?;
        }
    }
    if plan.was_running {
        host_step(format!("`start {ctid}`"), host.start(ctid))?;
    }
    let pin = record(true);
    state.write_pin(ctid, &pin).map_err(io)?;
    report(cli, &plan, Some(&pin), false);
    Ok(exit::OK)
}

fn report(cli: &Cli, plan: &RollbackPlan, pin: Option<&Pin>, dry_run: bool) {
    match cli.output {
        Output::Json => print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "dry_run": dry_run,
            "ctid": plan.ctid,
            "from": plan.from,
            "to": plan.to,
            "deletes": plan.deletes,
            "restored_from": plan.restore.as_ref().map(|k| &k.copy.location),
            "restarted": plan.was_running,
            "pinned": pin.map(|p| json!({
                "snapshot": p.snapshot,
                "pinned_at": crate::os::rfc3339(p.pinned_at),
                "pinned_by": p.by,
            })),
        })),
        Output::Human => {
            let would = if dry_run { "would " } else { "" };
            let ctid = plan.ctid;
            if plan.from.as_deref() == Some(plan.to.as_str()) {
                println!("CT {ctid} is at {} already", plan.to);
            }
            if plan.was_running {
                println!("{would}stop CT {ctid}");
            }
            for s in &plan.deletes {
                println!("{would}delete the newer snapshot {s}");
            }
            match &plan.restore {
                None => println!(
                    "{would}roll CT {ctid} back to {} (its files and its settings as built)",
                    plan.to
                ),
                Some(k) => {
                    if let Some(from) = &plan.from {
                        println!("{would}keep CT {ctid}'s current generation {from} apart");
                    }
                    println!(
                        "{would}restore CT {ctid} from {} (generation {}, kept {} UTC): its files and its settings as built",
                        k.copy.location,
                        plan.to,
                        crate::os::utc(k.kept_at)
                    );
                }
            }
            if plan.was_running {
                println!("{would}start CT {ctid} again");
            }
            println!(
                "{}pin CT {ctid} at {}: builds leave it alone until `phoenix unpin {ctid}`",
                if dry_run { "would " } else { "pinned: " },
                plan.to
            );
        }
    }
}

pub fn unpin(cli: &Cli, fleet: &Fleet, ctid: Ctid) -> Result<i32, Error> {
    check_targets(fleet, &[ctid])?;
    let state = open_state(cli)?;
    let removed = state
        .remove_pin(ctid)
        .map_err(|e| Error::StateDir(format!("cannot remove the pin of CT {ctid}: {e}")))?;
    match cli.output {
        Output::Json => print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "ctid": ctid,
            "was_pinned": removed,
        })),
        Output::Human if removed => {
            println!("CT {ctid} is unpinned: `phoenix plan` shows what the next build does to it")
        }
        Output::Human => println!("CT {ctid} was not pinned"),
    }
    Ok(exit::OK)
}
