//! A host wrapper that counts calls per [`Verb`] (a run reports them as `host_calls`) and
//! traces each one with its time and outcome (`-vv`, or `RUST_LOG=phoenix=debug`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crate::host::{
    CloneSpec, CreateSpec, CtInfo, Ctid, Host, HostError, HostFacts, HostResult, Network,
    Passthrough, Settings, Verb,
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

    fn call<T>(
        &self,
        verb: Verb,
        ctid: Option<Ctid>,
        f: impl FnOnce(&dyn Host) -> HostResult<T>,
    ) -> HostResult<T> {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry(verb).or_insert(0) += 1;
        }
        let started = Instant::now();
        let result = f(self.inner);
        let ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(_) => tracing::debug!(verb = verb.name(), ctid, ms, "host call"),
            Err(e) => tracing::debug!(
                verb = verb.name(),
                ctid,
                ms,
                kind = ?e.kind,
                error = %e.message,
                "host call failed"
            ),
        }
        result
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
    fn lock_path(&self) -> Option<std::path::PathBuf> {
        self.inner.lock_path()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn enter_hint(&self, ctid: Ctid) -> String {
        self.inner.enter_hint(ctid)
    }
    fn speaks_pct(&self) -> bool {
        self.inner.speaks_pct()
    }
    fn rollback_keeps_newer(&self) -> bool {
        self.inner.rollback_keeps_newer()
    }
    fn keeps_copies(&self) -> bool {
        self.inner.keeps_copies()
    }
    fn keep(&self, ctid: Ctid, storage: &str, note: &str) -> HostResult<crate::host::KeptCopy> {
        self.call(Verb::Backup, Some(ctid), |h| h.keep(ctid, storage, note))
    }
    fn restore(&self, ctid: Ctid, kept: &crate::host::KeptCopy, storage: &str) -> HostResult<()> {
        self.call(Verb::Restore, Some(ctid), |h| {
            h.restore(ctid, kept, storage)
        })
    }
    fn forget(&self, kept: &crate::host::KeptCopy) -> HostResult<()> {
        self.call(Verb::Forget, None, |h| h.forget(kept))
    }
    fn inventory(&self) -> HostResult<BTreeMap<Ctid, CtInfo>> {
        self.call(Verb::Inventory, None, |h| h.inventory())
    }
    fn ct(&self, ctid: Ctid) -> HostResult<Option<CtInfo>> {
        self.call(Verb::Config, Some(ctid), |h| h.ct(ctid))
    }
    fn config_file(&self, ctid: Ctid) -> HostResult<Option<String>> {
        self.inner.config_file(ctid)
    }
    fn not_found(&self, ctid: Ctid) -> HostError {
        self.inner.not_found(ctid)
    }
    fn facts(&self) -> HostResult<HostFacts> {
        self.call(Verb::Facts, None, |h| h.facts())
    }
    fn check_privileges(&self, needs: &crate::host::Privileges) -> Result<(), String> {
        self.inner.check_privileges(needs)
    }
    fn take_log(&self, ctid: Ctid) -> Vec<String> {
        self.inner.take_log(ctid)
    }
    fn check_storage(&self, storage: &str, ostemplate: Option<&str>) -> Vec<String> {
        self.inner.check_storage(storage, ostemplate)
    }
    fn check_runtime(&self, unprivileged: bool, network: Option<&Network>) -> Vec<String> {
        self.inner.check_runtime(unprivileged, network)
    }
    fn check_storage_on(&self, node: &str, storage: &str, ostemplate: Option<&str>) -> Vec<String> {
        self.inner.check_storage_on(node, storage, ostemplate)
    }
    fn check_runtime_on(
        &self,
        node: &str,
        unprivileged: bool,
        network: Option<&Network>,
    ) -> Vec<String> {
        self.inner.check_runtime_on(node, unprivileged, network)
    }
    fn facts_on(&self, node: &str) -> HostResult<HostFacts> {
        self.call(Verb::Facts, None, |h| h.facts_on(node))
    }
    fn cluster(&self) -> HostResult<Option<crate::host::ClusterView>> {
        self.inner.cluster()
    }
    fn migrate(&self, ctid: Ctid, node: &str, restart: bool) -> HostResult<()> {
        self.call(Verb::Migrate, Some(ctid), |h| {
            h.migrate(ctid, node, restart)
        })
    }
    fn create(&self, ctid: Ctid, spec: &CreateSpec) -> HostResult<()> {
        self.call(Verb::Create, Some(ctid), |h| h.create(ctid, spec))
    }
    fn links_clones_on(&self, storage: &str) -> Option<bool> {
        self.inner.links_clones_on(storage)
    }
    fn clone_with(&self, req: &crate::host::CloneRequest) -> HostResult<()> {
        self.call(Verb::Clone, Some(req.target), |h| h.clone_with(req))
    }
    fn template(&self, ctid: Ctid) -> HostResult<()> {
        self.call(Verb::Template, Some(ctid), |h| h.template(ctid))
    }
    fn clone_ct(&self, spec: &CloneSpec) -> HostResult<()> {
        self.call(Verb::Clone, Some(spec.target), |h| h.clone_ct(spec))
    }
    fn set(&self, ctid: Ctid, settings: &Settings) -> HostResult<()> {
        self.call(Verb::Set, Some(ctid), |h| h.set(ctid, settings))
    }
    fn resize(&self, ctid: Ctid, disk_gb: u64) -> HostResult<()> {
        self.call(Verb::Resize, Some(ctid), |h| h.resize(ctid, disk_gb))
    }
    fn set_devices(&self, ctid: Ctid, devices: &Passthrough) -> HostResult<()> {
        self.call(Verb::Devices, Some(ctid), |h| h.set_devices(ctid, devices))
    }
    fn start(&self, ctid: Ctid) -> HostResult<()> {
        self.call(Verb::Start, Some(ctid), |h| h.start(ctid))
    }
    fn shutdown(&self, ctid: Ctid, timeout_s: u64) -> HostResult<()> {
        self.call(Verb::Shutdown, Some(ctid), |h| h.shutdown(ctid, timeout_s))
    }
    fn stop(&self, ctid: Ctid) -> HostResult<()> {
        self.call(Verb::Stop, Some(ctid), |h| h.stop(ctid))
    }
    fn exec(&self, ctid: Ctid, argv: &[String], out: &mut dyn Write) -> HostResult<i32> {
        self.call(Verb::Exec, Some(ctid), |h| h.exec(ctid, argv, out))
    }
    fn push(&self, ctid: Ctid, local: &Path, dest: &str, perms: u32) -> HostResult<()> {
        self.call(Verb::Push, Some(ctid), |h| h.push(ctid, local, dest, perms))
    }
    fn pull(&self, ctid: Ctid, path: &str, local: &Path) -> HostResult<()> {
        self.call(Verb::Pull, Some(ctid), |h| h.pull(ctid, path, local))
    }
    fn snapshot(&self, ctid: Ctid, name: &str, description: &str) -> HostResult<()> {
        self.call(Verb::Snapshot, Some(ctid), |h| {
            h.snapshot(ctid, name, description)
        })
    }
    fn delete_snapshot(&self, ctid: Ctid, name: &str) -> HostResult<()> {
        self.call(Verb::Delsnapshot, Some(ctid), |h| {
            h.delete_snapshot(ctid, name)
        })
    }
    fn rollback(&self, ctid: Ctid, name: &str) -> HostResult<()> {
        self.call(Verb::Rollback, Some(ctid), |h| h.rollback(ctid, name))
    }
    fn destroy(&self, ctid: Ctid) -> HostResult<()> {
        self.call(Verb::Destroy, Some(ctid), |h| h.destroy(ctid))
    }
    fn unlock(&self, ctid: Ctid) -> HostResult<()> {
        self.call(Verb::Unlock, Some(ctid), |h| h.unlock(ctid))
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
