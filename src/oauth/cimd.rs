//! Client ID Metadata Documents: a `client_id` that is an HTTPS URL whose JSON document
//! describes the client (its name and redirect URIs), so clients need no registration.
//!
//! Fetching a URL an outsider chose is a server-side request forgery risk, so the fetch is
//! https only, follows no redirects, times out quickly, reads at most [`MAX_DOCUMENT_BYTES`],
//! and connects only to public addresses: the address check sits in the resolver ureq connects
//! with, so a name cannot resolve to a public address for the check and a private one for the
//! connection.

use super::Client;
use serde_json::Value;
use std::io::Read;
use std::net::IpAddr;
use std::time::Duration;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// Largest metadata document read.
pub const MAX_DOCUMENT_BYTES: u64 = 64 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a `client_id` is a metadata document URL rather than a registered id.
pub fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://")
}

/// The URL rules for a client_id document: https, a host, a path, no fragment, no user info,
/// no dot segments.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or("the client_id URL must use https")?;
    let (authority, path) = rest
        .split_once('/')
        .ok_or("the client_id URL must have a path")?;
    if authority.is_empty() || authority.contains('@') {
        return Err("the client_id URL must name a host, without user info".into());
    }
    if path.is_empty() || url.contains('#') {
        return Err("the client_id URL must have a path and no fragment".into());
    }
    if path
        .split(['/', '?'])
        .any(|segment| segment == "." || segment == "..")
    {
        return Err("the client_id URL must not contain . or .. segments".into());
    }
    Ok(())
}

/// Whether `ip` is an address on the public internet (not loopback, private, link-local,
/// shared, unspecified, multicast, documentation or the cloud metadata address).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b)
        }
    }
}

/// Resolves like ureq's default resolver, but refuses names with any non-public address.
#[derive(Debug, Default)]
struct PublicOnlyResolver(DefaultResolver);

impl Resolver for PublicOnlyResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let addresses = self.0.resolve(uri, config, timeout)?;
        if addresses.iter().any(|a| !is_public(a.ip())) {
            log::warn!(
                "refused to fetch client metadata from {uri}: it resolves to a non-public address"
            );
            return Err(ureq::Error::HostNotFound);
        }
        Ok(addresses)
    }
}

/// Fetches and checks the document at `url`; returns the client it describes.
pub fn fetch_client(url: &str) -> Result<Client, String> {
    check_url(url)?;
    let config = ureq::Agent::config_builder()
        .https_only(true)
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(FETCH_TIMEOUT))
        .user_agent(concat!("mcp-gateway/", env!("CARGO_PKG_VERSION")))
        .build();
    let agent = ureq::Agent::with_parts(
        config,
        DefaultConnector::new(),
        PublicOnlyResolver::default(),
    );
    let response = agent
        .get(url)
        .header("Accept", "application/json")
        .call()
        .map_err(|e| match e {
            ureq::Error::HostNotFound => {
                format!("cannot fetch {url}: its host is unknown or not on the public internet")
            }
            other => format!("cannot fetch {url}: {other}"),
        })?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(format!(
            "fetching {url} answered HTTP {status} (redirects are not followed)"
        ));
    }
    let mut body = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("cannot read {url}: {e}"))?;
    if body.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "the client metadata at {url} is larger than {MAX_DOCUMENT_BYTES} bytes"
        ));
    }
    let document: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the client metadata at {url} is not JSON: {e}"))?;
    client_from_document(url, &document)
}

/// The client a metadata document describes, after the document's own rules.
pub fn client_from_document(url: &str, document: &Value) -> Result<Client, String> {
    if document.get("client_id").and_then(Value::as_str) != Some(url) {
        return Err(format!("the document's client_id must be exactly {url}"));
    }
    if document.get("client_secret").is_some() || document.get("client_secret_expires_at").is_some()
    {
        return Err("a client metadata document must not contain a client secret".into());
    }
    let method = document
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
        .unwrap_or("none");
    if method != "none" {
        return Err(format!("token_endpoint_auth_method \"{method}\" is not supported for metadata documents (use none)"));
    }
    let redirect_uris = crate::oauth::string_list(document, "redirect_uris");
    if redirect_uris.is_empty() {
        return Err("the document lists no redirect_uris".into());
    }
    if let Some(bad) = redirect_uris
        .iter()
        .find(|u| !super::redirect_uri_allowed(u))
    {
        return Err(format!(
            "redirect URI {bad} is not allowed (https, or http on loopback)"
        ));
    }
    let host = url
        .trim_start_matches("https://")
        .split(['/', ':'])
        .next()
        .unwrap_or(url);
    let name = document
        .get("client_name")
        .and_then(Value::as_str)
        .map(|n| format!("{n} ({host})"))
        .unwrap_or_else(|| host.to_string());
    Ok(Client {
        client_id: url.to_string(),
        secret_sha256: None,
        name: name.chars().take(120).collect(),
        redirect_uris,
        auth_method: "none".into(),
        created: crate::tokens::now_secs(),
        source: "metadata".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls() {
        assert!(check_url("https://claude.ai/oauth/mcp-oauth-client-metadata").is_ok());
        assert!(check_url("http://claude.ai/x").is_err());
        assert!(check_url("https://claude.ai").is_err());
        assert!(check_url("https://claude.ai/").is_err());
        assert!(check_url("https://user@claude.ai/x").is_err());
        assert!(check_url("https://claude.ai/a/../b").is_err());
        assert!(check_url("https://claude.ai/x#f").is_err());
    }

    #[test]
    fn only_public_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
        for public in ["1.1.1.1", "160.79.104.10", "2606:4700::1111"] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
    }

    #[test]
    fn documents() {
        let url = "https://claude.ai/oauth/mcp-oauth-client-metadata";
        let good = json!({"client_id": url, "client_name": "Claude", "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"], "token_endpoint_auth_method": "none"});
        let client = client_from_document(url, &good).expect("client");
        assert_eq!(client.name, "Claude (claude.ai)");
        assert_eq!(client.source, "metadata");
        let mut wrong_id = good.clone();
        wrong_id["client_id"] = json!("https://evil.example/x");
        assert!(client_from_document(url, &wrong_id).is_err());
        let mut secret = good.clone();
        secret["client_secret"] = json!("s");
        assert!(client_from_document(url, &secret).is_err());
        let mut bad_redirect = good.clone();
        bad_redirect["redirect_uris"] = json!(["http://evil.example/cb"]);
        assert!(client_from_document(url, &bad_redirect).is_err());
    }

    #[test]
    fn loopback_documents_are_never_fetched() {
        let err = fetch_client("https://127.0.0.1/client.json").expect_err("refused");
        assert!(err.contains("not on the public internet"), "{err}");
        let err = fetch_client("https://localhost:9/client.json").expect_err("refused");
        assert!(err.contains("not on the public internet"), "{err}");
    }
}
