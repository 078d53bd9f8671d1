//! Redirect URIs, parsed strictly. A redirect URI comes from an outsider (registration needs no
//! login, and a metadata document is whatever its host serves) and ends up in a `Location`
//! header and, as an origin, in the consent page's `Content-Security-Policy`; so only URIs made
//! of the plain characters of RFC 3986, with a real host and port, are accepted.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// Longest redirect URI accepted, in bytes.
pub const MAX_URI_BYTES: usize = 512;

/// Why a redirect URI was refused (the URI itself is never repeated: it may be anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectError {
    /// Longer than [`MAX_URI_BYTES`].
    TooLong,
    /// A character that is not allowed (control, space, non-ASCII, `;`, `,`, quotes, ...).
    Character,
    /// Not `https://`, nor `http://` on a loopback host.
    Scheme,
    /// `user@` before the host.
    UserInfo,
    /// No host, or a host that is not a name or an IP address.
    Host,
    /// A port that is not a number from 1 to 65535.
    Port,
    /// A `#fragment`.
    Fragment,
    /// A `%` not followed by two hex digits.
    Escape,
}

impl fmt::Display for RedirectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            RedirectError::TooLong => "is longer than 512 characters",
            RedirectError::Character => {
                "has a character a redirect URI cannot have (spaces, control characters, non-ASCII, ';', ',', quotes and angle brackets are refused)"
            }
            RedirectError::Scheme => {
                "must use https, or http on localhost, 127.0.0.1 or [::1]"
            }
            RedirectError::UserInfo => "must not have user info (user@) before the host",
            RedirectError::Host => "has no usable host name or IP address",
            RedirectError::Port => "has a port that is not a number from 1 to 65535",
            RedirectError::Fragment => "must not have a #fragment",
            RedirectError::Escape => "has a % that does not start a %XX escape",
        };
        f.write_str(text)
    }
}

/// A checked redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri {
    uri: String,
    secure: bool,
    host: String,
    port: Option<u16>,
}

impl RedirectUri {
    /// Parses and checks `uri`.
    pub fn parse(uri: &str) -> Result<RedirectUri, RedirectError> {
        if uri.len() > MAX_URI_BYTES {
            return Err(RedirectError::TooLong);
        }
        if let Some(bad) = uri.bytes().find(|b| !uri_byte(*b)) {
            return Err(if bad == b'#' {
                RedirectError::Fragment
            } else {
                RedirectError::Character
            });
        }
        check_escapes(uri)?;
        let (secure, rest) = if let Some(rest) = uri.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = uri.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(RedirectError::Scheme);
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if authority.contains('@') {
            return Err(RedirectError::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        let parsed = RedirectUri {
            uri: uri.to_string(),
            secure,
            host,
            port,
        };
        if !secure && !parsed.is_loopback() {
            return Err(RedirectError::Scheme);
        }
        Ok(parsed)
    }

    /// The URI as registered.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// `scheme://host[:port]`, built from the checked parts.
    pub fn origin(&self) -> String {
        let scheme = if self.secure { "https" } else { "http" };
        match self.port {
            Some(port) => format!("{scheme}://{}:{port}", self.host),
            None => format!("{scheme}://{}", self.host),
        }
    }

    /// Whether the host is `localhost` or a loopback address.
    pub fn is_loopback(&self) -> bool {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        self.host.eq_ignore_ascii_case("localhost")
            || bare
                .parse::<IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false)
    }
}

/// RFC 3986 characters, less `;` and `,` (which would end a CSP directive or source), `'`
/// and `#` (fragments are not allowed in redirect URIs).
fn uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?[]@!$&()*+=%".contains(&b)
}

fn check_escapes(uri: &str) -> Result<(), RedirectError> {
    let bytes = uri.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(RedirectError::Escape)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(RedirectError::Escape);
            }
        }
    }
    Ok(())
}

/// The host (IPv6 literals keep their brackets) and the port of an authority.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), RedirectError> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (address, after) = v6.split_once(']').ok_or(RedirectError::Host)?;
        address
            .parse::<Ipv6Addr>()
            .map_err(|_| RedirectError::Host)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(RedirectError::Host)?),
        };
        (format!("[{address}]"), port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (authority.to_string(), None),
        }
    };
    if !host.starts_with('[') && !host_name_ok(&host) {
        return Err(RedirectError::Host);
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(RedirectError::Port),
                Ok(n) => Some(n),
            }
        }
        Some(_) => return Err(RedirectError::Port),
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// A DNS name (labels of letters, digits and inner hyphens) or a dotted IPv4 address.
fn host_name_ok(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_redirect_uris_pass() {
        for uri in [
            "https://claude.ai/api/mcp/auth_callback",
            "https://claude.com/api/mcp/auth_callback",
            "http://127.0.0.1:33418/callback",
            "http://localhost/cb",
            "http://[::1]:5/cb",
            "https://app.example:8443/cb?tenant=a&x=%2F",
            "https://app.example",
        ] {
            assert!(RedirectUri::parse(uri).is_ok(), "{uri}");
        }
        let parsed = RedirectUri::parse("https://App.Example:8443/cb?x").expect("ok");
        assert_eq!(parsed.origin(), "https://app.example:8443");
        assert_eq!(
            RedirectUri::parse("http://[::1]:5/cb")
                .expect("ok")
                .origin(),
            "http://[::1]:5"
        );
    }

    #[test]
    fn the_reported_attacks_are_refused() {
        let cases = [
            ("https://x.example/cb; script-src 'unsafe-inline'\r\nContent-Length: 35\r\n\r\n<svg onload=alert(1)>", RedirectError::Character),
            ("https://x.example/cb;frame-ancestors", RedirectError::Character),
            ("https://x.example/cb\r\nSet-Cookie: a=b", RedirectError::Character),
            ("https://x.example/c b", RedirectError::Character),
            ("https://x.example/a,b", RedirectError::Character),
            ("https://x.example/\u{0}", RedirectError::Character),
            ("https://x.example/é", RedirectError::Character),
            ("https://x.example/\"", RedirectError::Character),
            ("https://x.example/'", RedirectError::Character),
            ("https://x.example/<", RedirectError::Character),
            ("http://127.0.0.1:33418@evil.example/callback", RedirectError::UserInfo),
            ("https://user@x.example/cb", RedirectError::UserInfo),
            ("https://x/cb#frag", RedirectError::Fragment),
            ("https:///cb", RedirectError::Host),
            ("https://-x.example/cb", RedirectError::Host),
            ("https://x..example/cb", RedirectError::Host),
            ("https://[::1/cb", RedirectError::Host),
            ("https://[nope]/cb", RedirectError::Host),
            ("https://x.example:0/cb", RedirectError::Port),
            ("https://x.example:99999/cb", RedirectError::Port),
            ("https://x.example:/cb", RedirectError::Port),
            ("https://x.example:8a/cb", RedirectError::Port),
            ("http://evil.example/cb", RedirectError::Scheme),
            ("http://localhost.evil.example/cb", RedirectError::Scheme),
            ("javascript:alert(1)", RedirectError::Scheme),
            ("HTTPS://x.example/cb", RedirectError::Scheme),
            ("https://x.example/%zz", RedirectError::Escape),
            ("https://x.example/%4", RedirectError::Escape),
        ];
        for (uri, expected) in cases {
            assert_eq!(RedirectUri::parse(uri), Err(expected), "{uri:?}");
        }
        let long = format!("https://x.example/{}", "a".repeat(MAX_URI_BYTES));
        assert_eq!(RedirectUri::parse(&long), Err(RedirectError::TooLong));
    }

    #[test]
    fn loopback_means_the_parsed_host() {
        assert!(RedirectUri::parse("http://127.0.0.2/cb")
            .expect("ok")
            .is_loopback());
        assert!(!RedirectUri::parse("https://127.0.0.1.evil.example/cb")
            .expect("ok")
            .is_loopback());
    }
}
