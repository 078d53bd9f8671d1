//! The policy applied to every routed call before it leaves the gateway (issue 18).
//!
//! - [`schema`]: argument validation, a JSON Schema (Draft 2020-12) validator for a tool's
//!   `inputSchema`, compiled once per tool and run on every `tools/call`.
//! - [`ratelimit`]: token buckets per principal and for the whole gateway.

pub mod ratelimit;
pub mod schema;

pub use schema::{Schema, SchemaError, Violation};
