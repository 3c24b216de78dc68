//! The model's knobs, from the environment: latency per verb and injected faults.
//!
//! - `PHOENIX_SIM_LATENCY=*=50,clone=2000,exec=100,clone_per_gib=1500`: milliseconds per
//!   [`Verb`] (`*` for every other verb), and `<verb>_per_gib`: milliseconds more per GiB
//!   the call copies (a full clone copies its source's data, a backup the CT's; a linked
//!   clone, a snapshot and a rollback copy nothing), so that a call's cost follows its data.
//! - `PHOENIX_SIM_FAULTS=exec:950=exit3,clone:910=locked*2,start:903=fail`:
//!   `verb:ctid=effect[*count]`; effects `fail` (a permanent error), `locked` (the
//!   transient `CT is locked (disk)`), `exitN` (exec exits N), `sleepMS` (the call takes MS
//!   longer), `stopped` (the CT stops on its own just before the call: a shutdown someone
//!   else started); `*count` limits a fault to its first `count` calls; `ctid` may be `*`.

use std::collections::BTreeMap;

use crate::host::{Ctid, Verb};

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Fail,
    Locked,
    Exit(i32),
    Sleep(u64),
    Stopped,
}

#[derive(Clone, Debug)]
pub struct Fault {
    /// As written, which also keys its counter.
    pub spec: String,
    pub verb: Verb,
    pub ctid: Option<Ctid>,
    pub effect: Effect,
    pub count: Option<u64>,
}

fn verb(name: &str, knob: &str) -> Result<Verb, String> {
    Verb::parse(name).ok_or_else(|| {
        let all: Vec<&str> = Verb::ALL.iter().map(|v| v.name()).collect();
        format!("{knob}: `{name}` is not a host verb ({})", all.join(", "))
    })
}

/// Parses `PHOENIX_SIM_FAULTS`.
pub fn parse_faults(text: &str) -> Result<Vec<Fault>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|spec| {
            let bad = || format!("PHOENIX_SIM_FAULTS: cannot read `{spec}` (expected verb:ctid=effect[*count], e.g. exec:950=exit3)");
            let (target, effect) = spec.split_once('=').ok_or_else(bad)?;
            let (v, ctid) = target.split_once(':').ok_or_else(bad)?;
            let ctid = if ctid == "*" { None } else { Some(ctid.parse().map_err(|_| bad())?) };
            let (effect, count) = match effect.split_once('*') {
                Some((e, n)) => (e, Some(n.parse().map_err(|_| bad())?)),
                None => (effect, None),
            };
            let effect = match effect {
                "fail" => Effect::Fail,
                "locked" => Effect::Locked,
                "stopped" => Effect::Stopped,
                e if e.starts_with("exit") => Effect::Exit(e[4..].parse().map_err(|_| bad())?),
                e if e.starts_with("sleep") => Effect::Sleep(e[5..].parse().map_err(|_| bad())?),
                _ => return Err(bad()),
            };
            Ok(Fault {
                spec: spec.to_string(),
                verb: verb(v, "PHOENIX_SIM_FAULTS")?,
                ctid,
                effect,
                count,
            })
        })
        .collect()
}

/// Latency per verb, and per GiB a verb copies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// Milliseconds per call; `None` keys the default (`*`).
    pub per_call: BTreeMap<Option<Verb>, u64>,
    /// Milliseconds per GiB copied (`clone_per_gib`).
    pub per_gib: BTreeMap<Verb, u64>,
}

impl Latency {
    pub fn clear(&mut self) {
        *self = Latency::default();
    }

    /// Milliseconds a call of `verb` that copies `bytes` costs beyond its flat latency.
    pub fn for_bytes(&self, verb: Verb, bytes: u64) -> u64 {
        let per_gib = self.per_gib.get(&verb).copied().unwrap_or(0);
        (u128::from(per_gib) * u128::from(bytes) / u128::from(GIB)) as u64
    }
}

const GIB: u64 = 1 << 30;

/// Parses `PHOENIX_SIM_LATENCY`.
pub fn parse_latency(text: &str) -> Result<Latency, String> {
    let mut out = Latency::default();
    for kv in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            format!("PHOENIX_SIM_LATENCY: cannot read `{kv}` (expected verb=ms, e.g. *=50,clone=2000,clone_per_gib=1500)")
        })?;
        let ms = v
            .trim()
            .parse()
            .map_err(|_| format!("PHOENIX_SIM_LATENCY: `{v}` is not a number of milliseconds"))?;
        let k = k.trim();
        if k == "*" {
            out.per_call.insert(None, ms);
        } else if let Some(v) = k.strip_suffix("_per_gib") {
            out.per_gib.insert(verb(v, "PHOENIX_SIM_LATENCY")?, ms);
        } else {
            out.per_call
                .insert(Some(verb(k, "PHOENIX_SIM_LATENCY")?), ms);
        }
    }
    Ok(out)
}

/// The flat latency of one verb.
pub fn latency_of(latency: &Latency, v: Verb) -> u64 {
    latency
        .per_call
        .get(&Some(v))
        .or_else(|| latency.per_call.get(&None))
        .copied()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_parse() {
        let l = parse_latency("*=50, clone=2000").unwrap();
        assert_eq!(latency_of(&l, Verb::Clone), 2000);
        assert_eq!(latency_of(&l, Verb::Exec), 50);
        assert!(parse_latency("clone").is_err());
        assert!(parse_latency("clonez=1")
            .unwrap_err()
            .contains("not a host verb"));
        let f = parse_faults("exec:950=exit3,clone:*=locked*2").unwrap();
        assert_eq!(
            parse_faults("stop:910=stopped").unwrap()[0].effect,
            Effect::Stopped
        );
        assert_eq!(f[0].effect, Effect::Exit(3));
        assert_eq!(f[0].verb, Verb::Exec);
        assert_eq!(f[1].ctid, None);
        assert_eq!(f[1].count, Some(2));
        assert!(parse_faults("exec=1").is_err());
    }

    #[test]
    fn latency_can_follow_the_bytes_copied() {
        let l = parse_latency("clone=200,clone_per_gib=1000").unwrap();
        assert_eq!(latency_of(&l, Verb::Clone), 200);
        assert_eq!(l.for_bytes(Verb::Clone, 15 * GIB), 15_000);
        assert_eq!(l.for_bytes(Verb::Clone, GIB / 2), 500);
        assert_eq!(l.for_bytes(Verb::Backup, 15 * GIB), 0, "not set: free");
        assert!(parse_latency("clonez_per_gib=1")
            .unwrap_err()
            .contains("not a host verb"));
    }
}
