//! The MCP protocol as both sides of the gateway speak it: revisions and their methods, the
//! `_meta` keys and HTTP headers of the 2026-07-28 revision, which parameter names a request
//! (`Mcp-Name`), header value encoding, the four lists, how results differ between eras, and a
//! backend's result carried as its own JSON text ([`result_json`]).
//! The backend client and the MCP face both use this module; neither defines protocol facts of
//! its own.

pub mod base64;
pub mod headers;
pub mod param_headers;
pub mod result_json;
pub mod results;

/// The stateless revision.
pub const MODERN_VERSION: &str = "2026-07-28";
/// The revisions of the stateless era, as `server/discover` and a -32022 error list them.
pub const MODERN_VERSIONS: &[&str] = &[MODERN_VERSION];
/// Handshake revisions we speak, newest first.
pub const HANDSHAKE_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// `_meta` key of the protocol version in 2026-07-28 requests.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the client info in 2026-07-28 requests.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key of the client capabilities in 2026-07-28 requests.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key of the server info in 2026-07-28 results.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// `_meta` key of the log level a 2026-07-28 client wants for one request.
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key naming the `subscriptions/listen` request a notification belongs to.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
/// Prefix of the `_meta` keys the protocol reserves.
pub const META_RESERVED_PREFIX: &str = "io.modelcontextprotocol/";

/// The protocol version header (both eras).
pub const VERSION_HEADER: &str = "MCP-Protocol-Version";
/// The session header (handshake era).
pub const SESSION_HEADER: &str = "Mcp-Session-Id";
/// The method routing header (2026-07-28).
pub const METHOD_HEADER: &str = "Mcp-Method";
/// The name routing header (2026-07-28): the tool, prompt or resource a request names.
pub const NAME_HEADER: &str = "Mcp-Name";

/// Requests a 2026-07-28 client may send; anything else in that revision's envelope is -32601
/// (HTTP 404), `initialize`, `ping`, `logging/setLevel` and `resources/(un)subscribe` included.
pub const MODERN_REQUESTS: &[&str] = &[
    "server/discover",
    "subscriptions/listen",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "completion/complete",
];

/// Requests of the handshake era that the 2026-07-28 revision removed.
pub const REMOVED_IN_MODERN: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// The parameter whose value `Mcp-Name` carries for `method`, if any.
pub fn name_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Whether `version` is one we speak, in either era.
pub fn is_known_version(version: &str) -> bool {
    MODERN_VERSIONS.contains(&version) || HANDSHAKE_VERSIONS.contains(&version)
}

/// The four lists a server offers, in the one order every array indexed by them uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `tools/list`
    Tools,
    /// `resources/list`
    Resources,
    /// `resources/templates/list`
    Templates,
    /// `prompts/list`
    Prompts,
}

impl ListKind {
    /// All four, in index order.
    pub const ALL: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Resources,
        ListKind::Templates,
        ListKind::Prompts,
    ];

    /// Its position in arrays indexed by list.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The method that lists it.
    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Resources => "resources/list",
            ListKind::Templates => "resources/templates/list",
            ListKind::Prompts => "prompts/list",
        }
    }

    /// The key of the items in that method's result.
    pub fn result_key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Resources => "resources",
            ListKind::Templates => "resourceTemplates",
            ListKind::Prompts => "prompts",
        }
    }

    /// The server capability that offers it.
    pub fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Resources | ListKind::Templates => "resources",
            ListKind::Prompts => "prompts",
        }
    }

    /// The list a list method names.
    pub fn of_method(method: &str) -> Option<ListKind> {
        ListKind::ALL.into_iter().find(|k| k.method() == method)
    }

    /// The notification that says it changed (templates share the resources' one).
    pub fn changed_notification(self) -> &'static str {
        match self {
            ListKind::Tools => "notifications/tools/list_changed",
            ListKind::Resources | ListKind::Templates => "notifications/resources/list_changed",
            ListKind::Prompts => "notifications/prompts/list_changed",
        }
    }

    /// The list a `notifications/<list>/list_changed` is about (resources for their templates
    /// too).
    pub fn of_changed_notification(method: &str) -> Option<ListKind> {
        [ListKind::Tools, ListKind::Resources, ListKind::Prompts]
            .into_iter()
            .find(|k| k.changed_notification() == method)
    }

    /// The `subscriptions/listen` notification kind that asks for that notification.
    pub fn listen_kind(self) -> &'static str {
        match self {
            ListKind::Tools => "toolsListChanged",
            ListKind::Resources | ListKind::Templates => "resourcesListChanged",
            ListKind::Prompts => "promptsListChanged",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_era_has_its_versions_and_methods() {
        assert_eq!(MODERN_VERSIONS, ["2026-07-28"]);
        assert!(
            HANDSHAKE_VERSIONS.contains(&"2025-11-25")
                && !HANDSHAKE_VERSIONS.contains(&MODERN_VERSION)
        );
        assert!(is_known_version("2024-11-05") && !is_known_version("2099-01-01"));
        for removed in REMOVED_IN_MODERN {
            assert!(!MODERN_REQUESTS.contains(removed), "{removed}");
        }
        assert!(MODERN_REQUESTS.contains(&"server/discover"));
    }

    #[test]
    fn the_name_parameter_of_each_method() {
        assert_eq!(name_param("tools/call"), Some("name"));
        assert_eq!(name_param("prompts/get"), Some("name"));
        assert_eq!(name_param("resources/read"), Some("uri"));
        assert_eq!(name_param("tools/list"), None);
    }

    #[test]
    fn lists_have_one_order_and_their_names() {
        for (i, kind) in ListKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i);
            assert_eq!(ListKind::of_method(kind.method()), Some(kind));
        }
        assert_eq!(ListKind::Templates.result_key(), "resourceTemplates");
        assert_eq!(
            ListKind::Templates.changed_notification(),
            ListKind::Resources.changed_notification()
        );
        assert_eq!(ListKind::Prompts.listen_kind(), "promptsListChanged");
        assert_eq!(
            ListKind::of_changed_notification("notifications/resources/list_changed"),
            Some(ListKind::Resources)
        );
        assert_eq!(ListKind::of_changed_notification("notifications/x"), None);
    }
}
