//! The policy applied to every routed call before it leaves the gateway (issue 18).
//!
//! - [`schema`]: argument validation, a JSON Schema (Draft 2020-12) validator for a tool's
//!   `inputSchema`, compiled once per tool and run on every `tools/call`.
//! - [`ratelimit`]: token buckets per principal and for the whole gateway.
//! - [`access`]: the access rule of each principal, filtering lists and guarding calls.
//! - [`confirm`]: asking the user before a dangerous tool runs.
//! - [`cache`]: results of read-only tools, kept for a while per principal.

pub mod access;
pub mod cache;
pub mod confirm;
pub mod ratelimit;
pub mod schema;

pub use access::{AccessRule, Refusal};
pub use schema::{Schema, SchemaError, Violation};
