//! The pure engine: [`canon`]ical JSON, [`hash`]es and manifests, [`snapshot`] names and
//! build records, the [`plan`], [`secrets`] to rotate, [`why`] explanations, [`gc`] decisions and the generic
//! [`walker`]. No I/O and no host calls: everything it decides from is passed in.

pub mod canon;
pub mod gc;
pub mod hash;
pub mod plan;
pub mod secrets;
pub mod snapshot;
pub mod store;
pub mod walker;
pub mod why;
