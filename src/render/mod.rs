//! Rendering: events and results for people (live display, plain lines, summaries) and
//! as JSON. Decides nothing.

pub mod plan;
pub mod report;

/// Version of every JSON document phoenix prints; bumped on incompatible changes.
pub const JSON_SCHEMA_VERSION: u32 = 1;
