//! phoenix builds fleets of Proxmox VE LXC containers and templates the way Nix builds
//! packages: every template and container is a build node whose hash covers its inputs,
//! and the snapshot taken when it is built is named by that hash.
//!
//! The layout follows the data: [`config`] (files → typed nodes, located problems) →
//! [`graph`] (edges, order) → [`hash`] (manifests and hashes). The engine is pure and never
//! calls a host; the command line lives in [`cli`].

pub mod build;
pub mod canon;
pub mod cli;
pub mod commands;
pub mod config;
pub mod diag;
pub mod events;
pub mod exit;
pub mod gc;
pub mod graph;
pub mod hash;
pub mod host;
pub mod json;
pub mod pct_shim;
pub mod plan;
pub mod report;
pub mod rules;
pub mod schema;
pub mod sim;
pub mod snapshot;
pub mod state;
pub mod steps;
pub mod walker;
pub mod why;
