//! Client ID Metadata Documents: a `client_id` that is an HTTPS URL whose JSON document
//! describes the client (its name and redirect URIs), so clients need no registration.
//!
//! Fetching a URL an outsider chose is a server-side request forgery risk, so the fetch is
//! https only, follows no redirects, times out quickly, reads at most [`MAX_DOCUMENT_BYTES`],
//! and connects only to public addresses: the address check sits in the resolver ureq connects
//! with, so a name cannot resolve to a public address for the check and a private one for the
//! connection. No proxy from the environment is used (through a proxy the name would never be
//! resolved here, so the check would never run), and every refusal of the fetch itself gives
//! the same message, so the answers cannot map the gateway's network.

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

/// The message for every refusal of a fetch (address not public, no answer, not HTTP 200, too
/// big): the same each time, so that its wording tells nothing about the network.
pub const FETCH_REFUSED: &str = "its client_id URL could not be fetched from a public https address (the gateway never fetches from loopback, private, link-local or other special addresses, nor through a proxy, and follows no redirects)";

/// The URL rules for a client_id document: https, a host, a path, no fragment, no user info,
/// no dot segments; the characters and host rules of redirect URIs.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or("the client_id URL must use https")?;
    super::redirect::RedirectUri::parse(url).map_err(|e| format!("the client_id URL {e}"))?;
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
/// shared, unspecified, multicast, documentation or the cloud metadata address). IPv6 must be
/// global unicast (`2000::/3`) outside the ranges that embed or tunnel to IPv4 or are reserved
/// (`2001::/23` with Teredo, `2001:db8::/32`, 6to4 `2002::/16`); every IPv4-mapped,
/// IPv4-compatible, NAT64, site-local or unique-local form is refused.
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
            let [first, second, ..] = v6.segments();
            (first & 0xe000) == 0x2000
                && !(first == 0x2001 && second < 0x0200)
                && !(first == 0x2001 && second == 0x0db8)
                && first != 0x2002
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
                "refused to fetch client metadata from {}: it resolves to a non-public address",
                crate::untrusted::for_log(&uri.to_string())
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
        .proxy(None)
        .user_agent(concat!("mcp-gateway/", env!("CARGO_PKG_VERSION")))
        .build();
    let agent = ureq::Agent::with_parts(
        config,
        DefaultConnector::new(),
        PublicOnlyResolver::default(),
    );
    let shown = crate::untrusted::for_log(url);
    let refused = |why: String| {
        log::info!("client metadata from {shown} refused: {why}");
        FETCH_REFUSED.to_string()
    };
    let response = agent
        .get(url)
        .header("Accept", "application/json")
        .call()
        .map_err(|e| refused(e.to_string()))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(refused(format!("HTTP {status}")));
    }
    let mut body = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| refused(e.to_string()))?;
    if body.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(refused(format!("larger than {MAX_DOCUMENT_BYTES} bytes")));
    }
    let document: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the client metadata document is not JSON: {e}"))?;
    client_from_document(url, &document)
}

/// The client a metadata document describes, after the document's own rules.
pub fn client_from_document(url: &str, document: &Value) -> Result<Client, String> {
    if document.get("client_id").and_then(Value::as_str) != Some(url) {
        return Err("the document's client_id must be exactly the URL it was fetched from".into());
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
        return Err(
            "its token_endpoint_auth_method is not supported for metadata documents (use none)"
                .into(),
        );
    }
    let redirect_uris = crate::oauth::string_list(document, "redirect_uris");
    super::check_redirect_uris(&redirect_uris).map_err(|e| e.description)?;
    let host = url
        .trim_start_matches("https://")
        .split(['/', ':'])
        .next()
        .unwrap_or(url);
    let name = document
        .get("client_name")
        .and_then(Value::as_str)
        .map(|n| {
            let n = crate::untrusted::clean_name(n, super::MAX_NAME_CHARS);
            format!("{n} ({host})")
        })
        .unwrap_or_else(|| host.to_string());
    Ok(Client {
        client_id: url.to_string(),
        secret_sha256: None,
        name,
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
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "2002:7f00:1::1",
            "2002:a00:1::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "fec0::1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::a00:1",
            "100::1",
            "2001:db8::1",
            "ff02::1",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "240.0.0.1",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
        for public in [
            "1.1.1.1",
            "160.79.104.10",
            "2606:4700::1111",
            "2a00:1450::1",
        ] {
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
    fn loopback_documents_are_never_fetched_and_every_refusal_reads_the_same() {
        for url in [
            "https://127.0.0.1/client.json",
            "https://localhost:9/client.json",
            "https://[::1]/client.json",
            "https://[::ffff:127.0.0.1]/client.json",
            "https://[::127.0.0.1]/client.json",
            "https://[2002:7f00:1::1]/client.json",
        ] {
            let err = fetch_client(url).expect_err("refused");
            assert_eq!(err, FETCH_REFUSED, "{url}");
        }
    }
}
