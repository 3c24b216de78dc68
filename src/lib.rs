//! phoenix builds fleets of Proxmox VE LXC containers and templates the way Nix builds
//! packages: every template and container is a build node whose hash covers its inputs,
//! and the snapshot taken when it is built is named by that hash.
//!
//! The layout follows the data, each layer using only the ones above it:
//!
//! | module | owns | must not |
//! |---|---|---|
//! | [`fleet`] | what the user asked for: located JSON, config, schemas, rules, graph, diagnostics | know any host |
//! | [`host`] | the [`host::Host`] trait in phoenix's terms, host facts, Proxmox's formats ([`host::pve`]), the simulated Proxmox node ([`host::sim`]), the `pct` front-end | know the fleet's plan |
//! | [`engine`] | pure decisions: canonical JSON, hashes, snapshot names and records, plan, why, gc, the walker | do I/O or call a host |
//! | [`state`] | phoenix's own store: manifests, script blobs, node logs, the run lock | decide anything |
//! | [`build`] | one run: dispatcher, tasks and costs, steps, hooks, GPU device lines, events | render |
//! | [`render`] | events and results for people and as JSON | decide anything |
//! | [`cli`] | the command line, one file per command; [`exit`] holds every exit code | |
//!
//! [`os`] (the clock, atomic file writes) is a leaf every layer may use.

pub mod build;
pub mod cli;
pub mod engine;
pub mod exit;
pub mod fleet;
pub mod host;
pub mod os;
pub mod render;
pub mod state;
