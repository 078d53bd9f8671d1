//! Outbound HTTP (to backends and to the upstream LLM): ureq agents with a resolver that never
//! starts a thread on the path of a call.
//!
//! ureq's own resolver looks the host up again for every request, even on a pooled connection,
//! and runs the lookup on a new thread whenever a timeout applies (always, for our calls).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};
use ureq::Agent;

/// How long a looked-up address is reused.
const RESOLVED_FOR: Duration = Duration::from_secs(30);

/// An agent with `config` and the [`ReusingResolver`].
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
