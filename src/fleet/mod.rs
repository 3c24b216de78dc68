//! What the user asked for: the two config files read as located JSON ([`json`]), typed
//! into nodes ([`config`]) by [`load`], checked against schemas ([`schema`]) and rules ([`rules`]),
//! ordered into a [`graph`]; every problem a located [`diag`] diagnostic. Knows no host.

pub mod config;
pub mod diag;
pub mod graph;
pub mod json;
pub mod load;
pub mod rules;
pub mod schema;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use config::{Ctid, Hooks, Hypervisor, Node, Nvidia, Paths};
use diag::{Problems, SourceFile};
use graph::Graph;

pub use load::load;

/// A loaded, valid fleet.
#[derive(Debug)]
pub struct Fleet {
    pub paths: Paths,
    pub lxc_file: Arc<SourceFile>,
    pub lxc_tree: json::Value,
    pub hypervisor: Hypervisor,
    pub nvidia: Nvidia,
    pub nodes: BTreeMap<Ctid, Node>,
    pub hooks: Hooks,
    pub graph: Graph,
    /// Warnings found while loading (errors make loading fail).
    pub warnings: Problems,
}

impl Fleet {
    pub fn node(&self, ctid: Ctid) -> Option<&Node> {
        self.nodes.get(&ctid)
    }
    pub fn lxc_path(&self) -> &Path {
        &self.lxc_file.path
    }
    /// `file:line` of a value in the fleet config, for messages that name the source.
    pub fn line_of(&self, pointer: &str) -> String {
        let span = self.lxc_tree.locate(pointer, false);
        let (line, _) = self.lxc_file.line_col(span.start);
        format!("{}:{line}", self.lxc_file.path.display())
    }
}
