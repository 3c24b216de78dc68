//! The model's knobs, from the environment: latency per verb and injected faults.
//!
//! - `PHOENIX_SIM_LATENCY=*=50,clone=2000,exec=100`: milliseconds per [`Verb`] (`*` for
//!   every other verb).
//! - `PHOENIX_SIM_FAULTS=exec:950=exit3,clone:910=locked*2,start:903=fail`:
//!   `verb:ctid=effect[*count]`; effects `fail` (a permanent error), `locked` (the
//!   transient `CT is locked (disk)`), `exitN` (exec exits N), `sleepMS` (the call takes MS
//!   longer); `*count` limits a fault to its first `count` calls; `ctid` may be `*`.

use std::collections::BTreeMap;

use crate::host::{Ctid, Verb};

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Fail,
    Locked,
    Exit(i32),
    Sleep(u64),
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

/// Latency per verb; `None` keys the default (`*`).
pub type Latency = BTreeMap<Option<Verb>, u64>;

/// Parses `PHOENIX_SIM_LATENCY`.
pub fn parse_latency(text: &str) -> Result<Latency, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                format!("PHOENIX_SIM_LATENCY: cannot read `{kv}` (expected verb=ms, e.g. *=50,clone=2000)")
            })?;
            let ms = v.trim().parse().map_err(|_| {
                format!("PHOENIX_SIM_LATENCY: `{v}` is not a number of milliseconds")
            })?;
            let k = k.trim();
            let key = if k == "*" {
                None
            } else {
                Some(verb(k, "PHOENIX_SIM_LATENCY")?)
            };
            Ok((key, ms))
        })
        .collect()
}

/// The latency of one verb.
pub fn latency_of(latency: &Latency, v: Verb) -> u64 {
    latency
        .get(&Some(v))
        .or_else(|| latency.get(&None))
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
        assert_eq!(f[0].effect, Effect::Exit(3));
        assert_eq!(f[0].verb, Verb::Exec);
        assert_eq!(f[1].ctid, None);
        assert_eq!(f[1].count, Some(2));
        assert!(parse_faults("exec=1").is_err());
    }
}
