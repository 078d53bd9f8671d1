//! The faces: each turns one protocol spoken by clients into calls on the [`crate::gateway`] core
//! and its answers back into that protocol.

pub mod answer;
pub mod mcp;
pub mod oauth;
pub mod openai;
pub mod openapi;
pub mod owner;
