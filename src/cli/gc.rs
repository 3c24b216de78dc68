//! `phoenix gc`.

use super::*;

pub struct GcArgs {
    pub dry_run: bool,
    pub keep: usize,
    pub older_than: String,
    pub orphans: bool,
    pub wait: bool,
}

/// A snapshot (or, without one, an orphan CT or a store template) that could not be
/// removed.
#[derive(Serialize)]
struct GcError {
    ctid: Ctid,
    snapshot: Option<String>,
    /// The host's words.
    message: String,
}

/// Removes a store template no CT links to (unlocking and stopping what a cut-short
/// creation left first). A linked one is never tried: Proxmox refuses to remove a base
/// volume in use.
fn remove_store_template(host: &dyn crate::host::Host, vmid: Ctid) -> crate::host::HostResult<()> {
    let Some(ct) = host.ct(vmid)? else {
        return Ok(());
    };
    if !crate::engine::store::is_store_template(&ct) {
        return Err(crate::host::HostError::failed(format!(
            "VMID {vmid} is no longer one of phoenix's store templates; left alone"
        )));
    }
    if ct.lock.is_some() {
        host.unlock(vmid)?;
    }
    if ct.running {
        host.ensure_stopped(vmid)?;
    }
    host.destroy(vmid)
}

/// The store templates the kept generations' records name, with the CTs they were kept
/// for: those generations were linked clones of them. Generations this gc removes
/// (`going`) hold nothing.
fn kept_links(
    state: &StateDir,
    ctids: &std::collections::BTreeSet<Ctid>,
    going: &std::collections::BTreeSet<(Ctid, String)>,
) -> std::collections::BTreeMap<Ctid, Vec<Ctid>> {
    let mut out: std::collections::BTreeMap<Ctid, Vec<Ctid>> = std::collections::BTreeMap::new();
    for &ctid in ctids {
        for k in state.kept(ctid) {
            if going.contains(&(ctid, k.snapshot.clone())) {
                continue;
            }
            if let Some(store) = crate::engine::snapshot::BuildRecord::parse(&k.description).linked
            {
                let list = out.entry(store).or_default();
                if !list.contains(&ctid) {
                    list.push(ctid);
                }
            }
        }
    }
    out
}

pub fn gc(cli: &Cli, fleet: &Fleet, args: &GcArgs) -> Result<i32, Error> {
    let older_than_s =
        crate::engine::gc::parse_duration(&args.older_than).map_err(|message| Error::Usage {
            option: "--older-than",
            message,
        })?;
    let state = open_state(cli)?;
    let host = open_placed_host(cli, fleet)?;
    let _locks = lock_host(&state, host.as_ref(), "gc", args.wait)?;
    let pins = state.pins();
    let hashes = crate::engine::hash::hash_fleet_fixed(
        fleet,
        &crate::build::pinned_hashes(fleet, &state, &pins),
    );
    let pinned: std::collections::BTreeMap<Ctid, String> =
        pins.into_iter().map(|(c, p)| (c, p.snapshot)).collect();
    let inventory = host.inventory().map_err(Error::ReadHost)?;
    let kept: std::collections::BTreeMap<Ctid, Vec<crate::engine::gc::KeptGeneration>> = fleet
        .nodes
        .keys()
        .chain(inventory.keys())
        .map(|&c| {
            (
                c,
                state
                    .kept(c)
                    .into_iter()
                    .map(|k| crate::engine::gc::KeptGeneration {
                        snapshot: k.snapshot,
                        kept_at: k.kept_at,
                        location: k.copy.location,
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let policy = crate::engine::gc::Policy {
        keep: args.keep,
        older_than_s,
        now: now_secs(),
        orphans: args.orphans,
    };
    let decisions = crate::engine::gc::decide(&hashes, &inventory, &kept, &pinned, &policy);
    let found = crate::engine::store::found(&inventory, fleet.hypervisor.store_range);
    let going: std::collections::BTreeSet<(Ctid, String)> = decisions
        .snapshots
        .iter()
        .filter(|d| d.kept_copy.is_some() && d.decision == crate::engine::gc::Decision::Delete)
        .map(|d| (d.ctid, d.snapshot.clone()))
        .collect();
    let ctids: std::collections::BTreeSet<Ctid> = fleet
        .nodes
        .keys()
        .chain(inventory.keys())
        .copied()
        .collect();
    let stores = crate::engine::store::gc(
        &found,
        &hashes,
        &inventory,
        &kept_links(&state, &ctids, &going),
        &pinned,
    );
    let mut errors = Vec::new();
    let mut deleted = Vec::new();
    let mut destroyed = Vec::new();
    let mut removed_stores: Vec<Ctid> = Vec::new();
    if !args.dry_run {
        for d in decisions
            .snapshots
            .iter()
            .filter(|d| d.decision == crate::engine::gc::Decision::Delete)
        {
            let removed = match &d.kept_copy {
                Some(location) => {
                    // As recorded (with the node that holds it, over the API).
                    let copy = state
                        .kept(d.ctid)
                        .into_iter()
                        .map(|k| k.copy)
                        .find(|c| &c.location == location)
                        .unwrap_or_else(|| crate::host::KeptCopy {
                            location: location.clone(),
                            node: None,
                            size_bytes: None,
                        });
                    host.forget(&copy)
                        .map(|()| state.forget_kept(d.ctid, &d.snapshot))
                }
                None => host.delete_snapshot(d.ctid, &d.snapshot),
            };
            match removed {
                Ok(()) => {
                    let _ = state.record_removed(&[crate::state::Removed {
                        ctid: d.ctid,
                        snapshot: d.snapshot.clone(),
                        removed_at: now_secs(),
                    }]);
                    deleted.push((d.ctid, d.snapshot.clone()))
                }
                Err(e) => errors.push(GcError {
                    ctid: d.ctid,
                    snapshot: Some(d.snapshot.clone()),
                    message: e.to_string(),
                }),
            }
        }
        for s in stores.iter().filter(|s| {
            matches!(
                s.decision,
                crate::engine::store::StoreDecision::Delete { .. }
            )
        }) {
            match remove_store_template(host.as_ref(), s.found.vmid) {
                Ok(()) => removed_stores.push(s.found.vmid),
                Err(e) => errors.push(GcError {
                    ctid: s.found.vmid,
                    snapshot: s.found.snapshot.clone(),
                    message: e.to_string(),
                }),
            }
        }
        for o in decisions.orphans.iter().filter(|o| o.destroy) {
            let r = (|| {
                if o.running {
                    host.shutdown(o.ctid, 60)?;
                }
                host.destroy(o.ctid)
            })();
            match r {
                Ok(()) => destroyed.push(o.ctid),
                Err(e) => errors.push(GcError {
                    ctid: o.ctid,
                    snapshot: None,
                    message: e.to_string(),
                }),
            }
        }
    }
    match cli.output {
        Output::Json => print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "dry_run": args.dry_run,
            "snapshots": decisions.snapshots,
            "orphans": decisions.orphans,
            "deleted": deleted.iter().map(|(c, s)| json!({"ctid": c, "snapshot": s})).collect::<Vec<_>>(),
            "destroyed": destroyed,
            "store_templates": stores,
            "removed_store_templates": removed_stores,
            "errors": errors,
        })),
        Output::Human => {
            let verb = if args.dry_run {
                "would delete"
            } else {
                "delete"
            };
            let mut last = None;
            for d in &decisions.snapshots {
                if last != Some(d.ctid) {
                    println!("CT {}", node_label(fleet, d.ctid));
                    last = Some(d.ctid);
                }
                let why = match &d.decision {
                    crate::engine::gc::Decision::Delete => verb.to_string(),
                    crate::engine::gc::Decision::Keep { reason } => format!(
                        "keep: {}",
                        match reason {
                            crate::engine::gc::Keep::Wanted =>
                                "today's config builds it".to_string(),
                            crate::engine::gc::Keep::Current =>
                                "the live CT descends from it".to_string(),
                            crate::engine::gc::Keep::Recent { rank } =>
                                format!("generation {rank} of the --keep {}", args.keep),
                            crate::engine::gc::Keep::Young { age_s } => format!(
                                "younger than --older-than ({} old)",
                                crate::os::age(*age_s)
                            ),
                            crate::engine::gc::Keep::Pinned =>
                                "the CT is pinned at it (phoenix rollback)".to_string(),
                        }
                    ),
                };
                match &d.kept_copy {
                    None => println!(
                        "  {}  {} UTC  {why}",
                        d.snapshot,
                        crate::os::utc(d.snaptime)
                    ),
                    Some(at) => println!(
                        "  {}  kept apart {} UTC as {at}  {why}",
                        d.snapshot,
                        crate::os::utc(d.snaptime)
                    ),
                }
            }
            for s in &stores {
                println!("{}", store_line(fleet, s, verb));
            }
            for o in &decisions.orphans {
                if o.destroy {
                    println!(
                        "CT {} {}: phoenix's, no longer in the config: {}",
                        o.ctid,
                        o.name,
                        if args.dry_run {
                            "would destroy"
                        } else {
                            "destroy"
                        }
                    );
                } else {
                    println!("CT {} {}: phoenix's, no longer in the config: kept (pass --orphans to destroy it)", o.ctid, o.name);
                }
            }
            let candidates = decisions
                .snapshots
                .iter()
                .filter(|d| d.decision == crate::engine::gc::Decision::Delete)
                .count();
            let kept = decisions.snapshots.len() - candidates;
            let store_candidates = stores
                .iter()
                .filter(|s| {
                    matches!(
                        s.decision,
                        crate::engine::store::StoreDecision::Delete { .. }
                    )
                })
                .count();
            let stores_said = if stores.is_empty() {
                String::new()
            } else if args.dry_run {
                format!(
                    ", {store_candidates} store template(s) would be removed, {} kept",
                    stores.len() - store_candidates
                )
            } else {
                format!(
                    ", {} store template(s) removed, {} kept",
                    removed_stores.len(),
                    stores.len() - store_candidates
                )
            };
            if args.dry_run {
                println!("gc (dry run): {candidates} snapshot(s) would be deleted, {kept} kept{stores_said}; nothing was changed");
            } else {
                println!(
                    "gc: {} snapshot(s) deleted, {kept} kept, {} orphan CT(s) destroyed{stores_said}",
                    deleted.len(),
                    destroyed.len()
                );
            }
            for e in &errors {
                let store = stores.iter().any(|s| s.found.vmid == e.ctid);
                match &e.snapshot {
                    Some(s) if store => eprintln!(
                        "error: store template {} ({s}): cannot remove it: {}",
                        e.ctid, e.message
                    ),
                    Some(s) => eprintln!("error: CT {}: cannot delete {s}: {}", e.ctid, e.message),
                    None => eprintln!(
                        "error: CT {}: cannot destroy the orphan: {}",
                        e.ctid, e.message
                    ),
                }
            }
        }
    }
    Ok(if errors.is_empty() {
        exit::OK
    } else {
        exit::BUILD_FAILED
    })
}

/// One store template's line: which generation it holds, and its fate.
fn store_line(fleet: &Fleet, s: &crate::engine::store::StoreVerdict, verb: &str) -> String {
    use crate::engine::store::{StoreDecision, StoreDrop, StoreKeep};
    let list = |c: &[Ctid]| c.iter().map(Ctid::to_string).collect::<Vec<_>>().join(", ");
    let of = match (s.found.ctid, &s.found.snapshot) {
        (Some(c), Some(snap)) => format!("{snap} of CT {}", node_label(fleet, c)),
        _ => "of no generation phoenix can read".to_string(),
    };
    let why = match &s.decision {
        StoreDecision::Keep { reason } => format!(
            "keep: {}",
            match reason {
                StoreKeep::Linked { ctids } => format!(
                    "CT {} linked to it (Proxmox keeps a base volume in use)",
                    list(ctids)
                ),
                StoreKeep::KeptLinked { ctids } =>
                    format!("kept generations of CT {} were linked to it", list(ctids)),
                StoreKeep::Wanted =>
                    "today's config builds its generation: clones link to it".to_string(),
                StoreKeep::Current => "its node's live CT holds its generation".to_string(),
                StoreKeep::Pinned =>
                    "its node is pinned at its generation (phoenix rollback)".to_string(),
            }
        ),
        StoreDecision::Delete { reason } => format!(
            "{verb}: {}",
            match reason {
                StoreDrop::Unneeded =>
                    "no CT links to it and its generation is no longer wanted".to_string(),
                StoreDrop::Untrusted { why } =>
                    format!("not trusted ({why}), and no CT links to it"),
                StoreDrop::Duplicate { of } => format!(
                    "store template {of} holds the same generation, and no CT links to this one"
                ),
            }
        ),
    };
    format!("store template {} ({of})  {why}", s.found.vmid)
}
