//! Typed events of a build. Every output (live display, plain lines, JSON lines, the
//! summary) is rendered from these; the engine emits them and knows nothing of rendering.
//!
//! JSON lines (`--output json`): one object per line, tagged by `event`, each carrying
//! `schema_version` (the README's Output section lists every event and field;
//! `schemas/output/build-event.schema.json` pins them, checked by `tests/json_schemas.rs`).

use serde::{Deserialize, Serialize};

use crate::fleet::config::Ctid;

/// The steps of one node (DESIGN §5), in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Preflight,
    Migrate,
    Destroy,
    Create,
    Clone,
    Settings,
    Devices,
    Start,
    WaitReady,
    Nvidia,
    Docker,
    Hook,
    Shutdown,
    Snapshot,
    Restart,
    /// The store template of the node's generation (`store_vmid_range`).
    Store,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::Migrate => "migrate",
            Step::Destroy => "destroy",
            Step::Create => "create",
            Step::Clone => "clone",
            Step::Settings => "settings",
            Step::Devices => "devices",
            Step::Start => "start",
            Step::WaitReady => "wait_ready",
            Step::Nvidia => "nvidia",
            Step::Docker => "docker",
            Step::Hook => "hook",
            Step::Shutdown => "shutdown",
            Step::Snapshot => "snapshot",
            Step::Restart => "restart",
            Step::Store => "store",
        }
    }
}

/// How a node ended in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeOutcome {
    /// Built (created, rebuilt or updated).
    Built,
    /// Already fresh; nothing done.
    Fresh,
    Failed,
    Held,
    Blocked,
    /// A CT phoenix did not create sits at this CTID.
    Unmanaged,
    /// Not started: the run stopped early (`--fail-fast`).
    Cancelled,
    /// Left out of the run (`--skip-gpu`).
    Skipped,
    /// Held at a generation by `phoenix rollback`: left alone.
    Pinned,
}

impl NodeOutcome {
    /// The outcome as JSON spells it.
    pub fn name(&self) -> &'static str {
        match self {
            NodeOutcome::Built => "built",
            NodeOutcome::Fresh => "fresh",
            NodeOutcome::Failed => "failed",
            NodeOutcome::Held => "held",
            NodeOutcome::Blocked => "blocked",
            NodeOutcome::Unmanaged => "unmanaged",
            NodeOutcome::Cancelled => "cancelled",
            NodeOutcome::Skipped => "skipped",
            NodeOutcome::Pinned => "pinned",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run: String,
        backend: String,
        jobs: usize,
        /// Nodes that get work in this run.
        total: usize,
    },
    NodeStarted {
        ctid: Ctid,
        name: String,
        action: String,
    },
    StepStarted {
        ctid: Ctid,
        step: Step,
    },
    /// A lock that an interrupted phoenix run left on one of its CTs was removed.
    StaleLock {
        ctid: Ctid,
        lock: String,
    },
    Retry {
        ctid: Ctid,
        step: Step,
        attempt: u32,
        delay_ms: u64,
        error: String,
    },
    NodeFinished {
        ctid: Ctid,
        name: String,
        action: String,
        outcome: NodeOutcome,
        elapsed_ms: u64,
        /// The step that failed and the host's or hook's words.
        #[serde(skip_serializing_if = "Option::is_none")]
        failed_step: Option<Step>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The last lines the failed script printed (secrets masked), for the cause.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        output: Vec<String>,
        /// The ancestor that blocked or held this node.
        #[serde(skip_serializing_if = "Option::is_none")]
        blocked_by: Option<Ctid>,
        #[serde(skip_serializing_if = "Option::is_none")]
        log: Option<String>,
    },
    RunFinished {
        elapsed_ms: u64,
        /// Nodes per outcome.
        counts: std::collections::BTreeMap<String, usize>,
        /// Host calls made, per verb.
        host_calls: std::collections::BTreeMap<String, u64>,
        exit_code: i32,
    },
}
