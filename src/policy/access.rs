//! Access rules: what one principal (a static token or an OAuth grant) may reach.
//!
//! A rule has four parts, all optional: the servers it may use, allow and deny globs on the
//! names clients see (deny wins; no allow glob means everything not denied), and `read_only`,
//! which leaves only the tools marked read-only (`annotations.readOnlyHint: true`, or listed in
//! their server's `read_only_tools`). Prompts and resources count as reads; the globs apply to
//! tool and prompt names, the server list to everything.
//!
//! The same rule filters the lists a principal sees and guards each call it makes, so a
//! principal can never call what it is not shown.

use crate::catalog::glob_match;
use crate::jsonrpc::{self, RpcError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::fmt;

/// What one principal may reach. The default allows everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRule {
    /// The servers it may use (`None`: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<String>>,
    /// Globs on tool and prompt names as clients see them; when any is given, a name must
    /// match one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Globs on the same names that are never reachable (these win over `allow`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Only read-only tools.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// Why a rule refused something; its text names the part of the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The server is not among the rule's servers.
    Server(String),
    /// The name matches this deny glob.
    Denied(String),
    /// The rule has allow globs and the name matches none.
    NotAllowed,
    /// The rule is read-only and the tool is not marked read-only.
    ReadOnly,
}

impl Refusal {
    /// The part of the rule that refused: `servers`, `deny`, `allow` or `read_only`.
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::Server(_) => "servers",
            Refusal::Denied(_) => "deny",
            Refusal::NotAllowed => "allow",
            Refusal::ReadOnly => "read_only",
        }
    }

    /// The JSON-RPC error for a refused `kind` ("tool", "prompt", "resource") named `name`.
    pub fn to_rpc(&self, kind: &str, name: &str) -> RpcError {
        RpcError::new(
            jsonrpc::ACCESS_DENIED,
            format!("{kind} \"{name}\" is refused by this client's access rule: {self}"),
        )
        .with_data(json!({"name": name, "rule": self.rule()}))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Server(server) => write!(f, "server \"{server}\" is not among its servers"),
            Refusal::Denied(glob) => write!(f, "the name matches its deny glob \"{glob}\""),
            Refusal::NotAllowed => write!(f, "the name matches none of its allow globs"),
            Refusal::ReadOnly => write!(
                f,
                "it is read-only, and this tool is not marked read-only (readOnlyHint, or the server's read_only_tools)"
            ),
        }
    }
}

impl AccessRule {
    /// A rule that allows everything.
    pub fn everything() -> AccessRule {
        AccessRule::default()
    }

    /// A rule that allows nothing at all (for a token whose profile no longer exists).
    pub fn nothing() -> AccessRule {
        AccessRule {
            servers: Some(Vec::new()),
            allow: Vec::new(),
            deny: vec!["*".into()],
            read_only: true,
        }
    }

    /// Whether it allows everything.
    pub fn is_everything(&self) -> bool {
        *self == AccessRule::default()
    }

    /// Whether it lets the principal use server `server` at all.
    pub fn permits_server(&self, server: &str) -> bool {
        self.servers
            .as_ref()
            .map(|s| s.iter().any(|x| x == server))
            .unwrap_or(true)
    }

    /// Checks the server (`None`: the gateway's own) and the name of a tool or prompt.
    pub fn check_name(&self, server: Option<&str>, name: &str) -> Result<(), Refusal> {
        if let Some(server) = server {
            if !self.permits_server(server) {
                return Err(Refusal::Server(server.to_string()));
            }
        }
        if let Some(glob) = self.deny.iter().find(|g| glob_match(g, name)) {
            return Err(Refusal::Denied(glob.clone()));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|g| glob_match(g, name)) {
            return Err(Refusal::NotAllowed);
        }
        Ok(())
    }

    /// Checks a tool: its server, its name, and whether it is read-only.
    pub fn check_tool(
        &self,
        server: Option<&str>,
        name: &str,
        read_only: bool,
    ) -> Result<(), Refusal> {
        self.check_name(server, name)?;
        if self.read_only && !read_only {
            return Err(Refusal::ReadOnly);
        }
        Ok(())
    }

    /// One line for `token list` and logs: `everything`, or its parts.
    pub fn describe(&self) -> String {
        if self.is_everything() {
            return "everything".into();
        }
        let mut parts = Vec::new();
        if let Some(servers) = &self.servers {
            parts.push(if servers.is_empty() {
                "servers=(none)".to_string()
            } else {
                format!("servers={}", servers.join(","))
            });
        }
        if !self.allow.is_empty() {
            parts.push(format!("allow={}", self.allow.join(",")));
        }
        if !self.deny.is_empty() {
            parts.push(format!("deny={}", self.deny.join(",")));
        }
        if self.read_only {
            parts.push("read-only".into());
        }
        parts.join(" ")
    }
}

/// The `servers` part of a rule from the servers ticked on a form (the consent page, the
/// owner's page): `None`, every server, when each of `all` is ticked; a name ticked twice
/// counts once and a name not in `all` not at all.
pub fn ticked_servers<'a>(
    ticked: impl Iterator<Item = &'a str>,
    all: &[String],
) -> Option<Vec<String>> {
    let mut chosen: Vec<String> = Vec::new();
    for name in ticked {
        if all.iter().any(|a| a == name) && !chosen.iter().any(|c| c == name) {
            chosen.push(name.to_string());
        }
    }
    (chosen.len() != all.len()).then_some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        servers: Option<&[&str]>,
        allow: &[&str],
        deny: &[&str],
        read_only: bool,
    ) -> AccessRule {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        AccessRule {
            servers: servers.map(strings),
            allow: strings(allow),
            deny: strings(deny),
            read_only,
        }
    }

    #[test]
    fn everything_allows_everything() {
        let all = AccessRule::everything();
        assert!(all.is_everything());
        assert_eq!(
            all.check_tool(Some("house"), "house__unlock", false),
            Ok(())
        );
        assert_eq!(all.describe(), "everything");
    }

    #[test]
    fn deny_wins_over_allow() {
        let r = rule(None, &["house__*"], &["*unlock*"], false);
        assert_eq!(r.check_name(Some("house"), "house__lights"), Ok(()));
        assert_eq!(
            r.check_name(Some("house"), "house__unlock"),
            Err(Refusal::Denied("*unlock*".into()))
        );
        assert_eq!(
            r.check_name(Some("nas"), "nas__list"),
            Err(Refusal::NotAllowed)
        );
    }

    #[test]
    fn servers_and_read_only_are_checked_and_named() {
        let r = rule(Some(&["house"]), &[], &[], true);
        let refused = r.check_tool(Some("nas"), "nas__list", true).unwrap_err();
        assert_eq!(refused.rule(), "servers");
        assert!(refused.to_string().contains("\"nas\""));
        assert_eq!(
            r.check_tool(Some("house"), "house__unlock", false),
            Err(Refusal::ReadOnly)
        );
        assert_eq!(r.check_tool(Some("house"), "house__status", true), Ok(()));
        // The gateway's own tools belong to no server.
        assert_eq!(r.check_tool(None, "gateway__status", true), Ok(()));
        let error = Refusal::ReadOnly.to_rpc("tool", "house__unlock");
        assert_eq!(error.code, jsonrpc::ACCESS_DENIED);
        assert!(error.message.contains("read-only"));
        assert_eq!(r.describe(), "servers=house read-only");
    }

    #[test]
    fn nothing_refuses_even_the_gateways_own_tools() {
        let none = AccessRule::nothing();
        assert!(none.check_tool(None, "gateway__status", true).is_err());
        assert!(!none.permits_server("house"));
    }

    #[test]
    fn stored_form_is_compact_and_round_trips() {
        let r = rule(Some(&["house"]), &[], &["*delete*"], true);
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"servers":["house"],"deny":["*delete*"],"read_only":true}"#
        );
        assert_eq!(serde_json::from_str::<AccessRule>(&text).unwrap(), r);
        assert_eq!(
            serde_json::from_str::<AccessRule>("{}").unwrap(),
            AccessRule::everything()
        );
    }

    #[test]
    fn ticked_servers_count_each_known_name_once() {
        let all = vec!["a".to_string(), "b".to_string()];
        assert_eq!(ticked_servers(["a", "b"].into_iter(), &all), None);
        assert_eq!(ticked_servers(["b", "a", "a"].into_iter(), &all), None);
        // Twice the same server is not every server.
        assert_eq!(
            ticked_servers(["a", "a"].into_iter(), &all),
            Some(vec!["a".to_string()])
        );
        assert_eq!(
            ticked_servers(["a", "zz"].into_iter(), &all),
            Some(vec!["a".to_string()])
        );
        assert_eq!(ticked_servers(std::iter::empty(), &all), Some(vec![]));
    }
}
