//! A host wrapper that counts calls per [`Verb`]: a run reports them (`host_calls`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::host::{
    CloneSpec, CreateSpec, CtInfo, Ctid, Host, HostError, HostFacts, HostResult, Passthrough,
    Settings, Verb,
};

pub struct Counting<'a> {
    inner: &'a dyn Host,
    counts: Mutex<BTreeMap<Verb, u64>>,
}

impl<'a> Counting<'a> {
    pub fn new(inner: &'a dyn Host) -> Self {
        Counting {
            inner,
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    fn count(&self, verb: Verb) {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry(verb).or_insert(0) += 1;
        }
    }

    /// Calls so far, by verb name.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .map(|c| c.iter().map(|(v, n)| (v.name().to_string(), *n)).collect())
            .unwrap_or_default()
    }
}

impl Host for Counting<'_> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn inventory(&self) -> HostResult<BTreeMap<Ctid, CtInfo>> {
        self.count(Verb::Inventory);
        self.inner.inventory()
    }
    fn ct(&self, ctid: Ctid) -> HostResult<Option<CtInfo>> {
        self.count(Verb::Config);
        self.inner.ct(ctid)
    }
    fn config_file(&self, ctid: Ctid) -> HostResult<Option<String>> {
        self.inner.config_file(ctid)
    }
    fn not_found(&self, ctid: Ctid) -> HostError {
        self.inner.not_found(ctid)
    }
    fn facts(&self) -> HostResult<HostFacts> {
        self.count(Verb::Facts);
        self.inner.facts()
    }
    fn create(&self, ctid: Ctid, spec: &CreateSpec) -> HostResult<()> {
        self.count(Verb::Create);
        self.inner.create(ctid, spec)
    }
    fn clone_ct(&self, spec: &CloneSpec) -> HostResult<()> {
        self.count(Verb::Clone);
        self.inner.clone_ct(spec)
    }
    fn set(&self, ctid: Ctid, settings: &Settings) -> HostResult<()> {
        self.count(Verb::Set);
        self.inner.set(ctid, settings)
    }
    fn resize(&self, ctid: Ctid, disk_gb: u64) -> HostResult<()> {
        self.count(Verb::Resize);
        self.inner.resize(ctid, disk_gb)
    }
    fn set_devices(&self, ctid: Ctid, devices: &Passthrough) -> HostResult<()> {
        self.count(Verb::Devices);
        self.inner.set_devices(ctid, devices)
    }
    fn start(&self, ctid: Ctid) -> HostResult<()> {
        self.count(Verb::Start);
        self.inner.start(ctid)
    }
    fn shutdown(&self, ctid: Ctid, timeout_s: u64) -> HostResult<()> {
        self.count(Verb::Shutdown);
        self.inner.shutdown(ctid, timeout_s)
    }
    fn stop(&self, ctid: Ctid) -> HostResult<()> {
        self.count(Verb::Stop);
        self.inner.stop(ctid)
    }
    fn exec(&self, ctid: Ctid, argv: &[String], out: &mut dyn Write) -> HostResult<i32> {
        self.count(Verb::Exec);
        self.inner.exec(ctid, argv, out)
    }
    fn push(&self, ctid: Ctid, local: &Path, dest: &str, perms: u32) -> HostResult<()> {
        self.count(Verb::Push);
        self.inner.push(ctid, local, dest, perms)
    }
    fn pull(&self, ctid: Ctid, path: &str, local: &Path) -> HostResult<()> {
        self.count(Verb::Pull);
        self.inner.pull(ctid, path, local)
    }
    fn snapshot(&self, ctid: Ctid, name: &str, description: &str) -> HostResult<()> {
        self.count(Verb::Snapshot);
        self.inner.snapshot(ctid, name, description)
    }
    fn delete_snapshot(&self, ctid: Ctid, name: &str) -> HostResult<()> {
        self.count(Verb::Delsnapshot);
        self.inner.delete_snapshot(ctid, name)
    }
    fn rollback(&self, ctid: Ctid, name: &str) -> HostResult<()> {
        self.count(Verb::Rollback);
        self.inner.rollback(ctid, name)
    }
    fn destroy(&self, ctid: Ctid) -> HostResult<()> {
        self.count(Verb::Destroy);
        self.inner.destroy(ctid)
    }
    fn unlock(&self, ctid: Ctid) -> HostResult<()> {
        self.count(Verb::Unlock);
        self.inner.unlock(ctid)
    }
    fn pct_dir(&self) -> Option<PathBuf> {
        self.inner.pct_dir()
    }
    fn hook_env(&self) -> Vec<(String, String)> {
        self.inner.hook_env()
    }
    fn estimate_ms(&self, verb: Verb) -> u64 {
        self.inner.estimate_ms(verb)
    }
}
