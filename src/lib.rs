//! mcp-gateway: one small binary that puts several MCP servers behind one authenticated MCP
//! endpoint.
//!
//! The parts, each in its own module:
//! - [`cli`]: the command line; [`logging`]: the log lines on stderr.
//! - [`audit`]: the audit log, a JSON line per call, refusal and failed authentication.
//! - [`metrics`]: the counters behind `GET /metrics` (Prometheus text format).
//! - [`config`]: the config file, checked into a [`config::Config`].
//! - [`server`]: the HTTP server (worker pool, routing, auth, limits).
//! - [`face`]: the protocols clients speak (the MCP face at `/mcp`).
//! - [`gateway`]: the core the faces call.
//! - [`catalog`]: the aggregated, namespaced view of all backends.
//! - [`search`] and [`tool_view`]: tool search over the catalog, and the small `search` view.
//! - [`backend`]: one MCP client per configured server, over stdio, HTTP+SSE or Streamable HTTP.
//! - [`service`]: the PID file, `reload` and `healthcheck`; [`resilient`]: background threads that outlive a panic.
//! - [`tokens`] and [`store`]: bearer tokens, kept hashed in the state folder.
//! - [`oauth`]: the built-in OAuth 2.1 authorization server (its HTTP side is `face::oauth`).
//! - [`mcp`]: the protocol both sides speak: revisions, methods, headers, lists, result shapes.
//! - [`link`]: how a call reaches back to the client that made it.
//! - [`outbound`]: the HTTP client side (agents, their resolver, and lean connections).
//! - [`jsonrpc`], [`sse`], [`http_util`]: wire helpers; [`untrusted`]: outsiders' text made safe to log or send.

pub mod audit;
pub mod backend;
pub mod builtin;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod face;
pub mod gateway;
pub mod http_util;
pub mod jsonrpc;
pub mod latency;
pub mod link;
pub mod llm;
pub mod logging;
pub mod mcp;
pub mod metrics;
pub mod oauth;
pub mod outbound;
pub mod policy;
pub mod resilient;
pub mod search;
pub mod server;
pub mod service;
pub mod sse;
pub mod store;
pub mod tokens;
pub mod tool_view;
pub mod untrusted;
