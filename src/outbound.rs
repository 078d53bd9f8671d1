//! Outbound HTTP (to backends and to the upstream LLM): ureq agents with a resolver that never
//! starts a thread on the path of a call.
//!
//! ureq's own resolver looks the host up again for every request, even on a pooled connection,
//! and runs the lookup on a new thread whenever a timeout applies (always, for our calls).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use ureq::config::{Config, ConfigBuilder};
use ureq::http::Uri;
use ureq::typestate::AgentScope;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};
use ureq::Agent;

/// How long a looked-up address is reused.
const RESOLVED_FOR: Duration = Duration::from_secs(30);

/// Bytes read from a backend or the LLM at a time; also the most a response head may take.
const INPUT_BUFFER: usize = 32 * 1024;
/// Bytes written at a time (a request head must fit).
const OUTPUT_BUFFER: usize = 16 * 1024;

/// ureq's agent settings with our buffer sizes. ureq's defaults (128 KiB in and out, zeroed on
/// first use) made every warm pooled connection cost 256 KiB of resident memory, most of the
/// gateway's idle RSS with one backend; bodies stream through the buffers, so only a response
/// head must fit in [`INPUT_BUFFER`].
pub fn config_builder() -> ConfigBuilder<AgentScope> {
    Agent::config_builder()
        .input_buffer_size(INPUT_BUFFER)
        .output_buffer_size(OUTPUT_BUFFER)
        .max_response_header_size(INPUT_BUFFER)
}

/// An agent with `config` (from [`config_builder`]) and the [`ReusingResolver`].
pub fn agent(config: Config) -> Agent {
    Agent::with_parts(config, DefaultConnector::new(), ReusingResolver::default())
}

/// Resolves without a thread per request: an IP literal (`127.0.0.1:8080`,
/// `[::1]:9`) needs no lookup; a name is looked up (by ureq's resolver, with its timeout) and
/// reused for [`RESOLVED_FOR`].
#[derive(Debug, Default)]
pub struct ReusingResolver {
    looked_up: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl Resolver for ReusingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host_port = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => DefaultResolver::host_and_port(scheme, authority),
            _ => None,
        };
        let Some(host_port) = host_port else {
            return DefaultResolver::default().resolve(uri, config, timeout);
        };
        if let Ok(literal) = host_port.parse::<SocketAddr>() {
            let mut one = self.empty();
            one.push(literal);
            return Ok(one);
        }
        let now = Instant::now();
        {
            let mut looked_up = self.looked_up.lock().unwrap_or_else(|e| e.into_inner());
            match looked_up.get(&host_port) {
                Some((when, addresses)) if now.duration_since(*when) < RESOLVED_FOR => {
                    return Ok(addresses.clone());
                }
                Some(_) => {
                    looked_up.remove(&host_port);
                }
                None => {}
            }
        }
        let addresses = DefaultResolver::default().resolve(uri, config, timeout)?;
        self.looked_up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host_port, (now, addresses.clone()));
        Ok(addresses)
    }
}
