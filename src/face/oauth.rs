//! The OAuth face: discovery metadata (RFC 9728, RFC 8414), dynamic client registration
//! (RFC 7591), the authorization endpoint with its consent page, the token endpoint (RFC 6749
//! with PKCE) and revocation (RFC 7009). The rules themselves live in [`crate::oauth`].

use crate::gateway::Gateway;
use crate::http_util::{request_header, respond_empty, respond_json};
use crate::oauth::{self, AuthorizeFailure, AuthorizeRequest, OAuthError, PendingAuthorization};
use crate::untrusted::for_log;
use serde_json::{json, Value};
use tiny_http::{Method, Request, Response};

/// Registrations allowed per address per hour.
const REGISTRATIONS_PER_HOUR: usize = 20;
/// Largest body accepted on the OAuth endpoints (forms and registrations are small); the
/// server answers 413 before reading more.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest registration body.
pub const MAX_REGISTRATION_BYTES: usize = 16 * 1024;

/// The largest body `path` (one of ours) accepts.
pub fn body_limit(path: &str) -> usize {
    if path == "/oauth/register" {
        MAX_REGISTRATION_BYTES
    } else {
        MAX_BODY_BYTES
    }
}

/// Whether `path` belongs to this face.
pub fn handles(path: &str) -> bool {
    path.starts_with("/.well-known/oauth-")
        || path == "/.well-known/openid-configuration"
        || path.starts_with("/oauth/")
}

/// The URL clients reach us at: `public_url`, else forwarded headers (when trusted), else Host.
pub fn base_url(gateway: &Gateway, request: &Request) -> String {
    if let Some(url) = &gateway.config().public_url {
        return url.clone();
    }
    if gateway.config().oauth.trust_forwarded_headers {
        if let (Some(proto), Some(host)) = (
            request_header(request, "X-Forwarded-Proto"),
            request_header(request, "X-Forwarded-Host"),
        ) {
            return format!(
                "{}://{}",
                proto.split(',').next().unwrap_or("https").trim(),
                host.split(',').next().unwrap_or("").trim()
            );
        }
    }
    let host = request_header(request, "Host")
        .map(str::to_string)
        .unwrap_or_else(|| gateway.config().listen.clone());
    format!("http://{host}")
}

/// The resource (audience) of our tokens: the MCP endpoint.
pub fn resource_url(base: &str) -> String {
    format!("{base}/mcp")
}

/// Where a client finds our protected-resource metadata (for `WWW-Authenticate`).
pub fn resource_metadata_url(base: &str) -> String {
    format!("{base}/.well-known/oauth-protected-resource/mcp")
}

fn cors() -> Vec<(String, String)> {
    vec![
        ("Access-Control-Allow-Origin".into(), "*".into()),
        (
            "Access-Control-Allow-Headers".into(),
            "Authorization, Content-Type, MCP-Protocol-Version".into(),
        ),
        (
            "Access-Control-Allow-Methods".into(),
            "GET, POST, OPTIONS".into(),
        ),
        ("Cache-Control".into(), "no-store".into()),
    ]
}

/// Answers with an RFC 6749 error (`{"error", "error_description"}`).
pub fn respond_oauth_error(request: Request, error: &OAuthError) {
    let mut headers = cors();
    if let Some(seconds) = error.retry_after {
        headers.push(("Retry-After".into(), seconds.to_string()));
    }
    if error.code == "invalid_client" {
        headers.push((
            "WWW-Authenticate".into(),
            "Basic realm=\"mcp-gateway\"".into(),
        ));
    }
    respond_json(
        request,
        error.status,
        &json!({"error": error.code, "error_description": error.description}),
        &headers,
    );
}

/// Answers one request to an OAuth path. `body` has been read within the size limit.
pub fn handle(gateway: &Gateway, request: Request, body: &[u8]) {
    let path = request
        .url()
        .split('?')
        .next()
        .unwrap_or("")
        .trim_end_matches('/')
        .to_string();
    let base = base_url(gateway, &request);
    if *request.method() == Method::Options {
        return respond_empty(request, 204, &cors());
    }
    match (request.method().clone(), path.as_str()) {
        (
            Method::Get,
            "/.well-known/oauth-protected-resource" | "/.well-known/oauth-protected-resource/mcp",
        ) => {
            let metadata = json!({
                "resource": resource_url(&base),
                "authorization_servers": [base],
                "scopes_supported": ["mcp"],
                "bearer_methods_supported": ["header"],
                "resource_name": "mcp-gateway",
            });
            respond_json(request, 200, &metadata, &cors());
        }
        (
            Method::Get,
            "/.well-known/oauth-authorization-server" | "/.well-known/openid-configuration",
        ) => {
            let mut metadata = json!({
                "issuer": base,
                "authorization_endpoint": format!("{base}/oauth/authorize"),
                "token_endpoint": format!("{base}/oauth/token"),
                "revocation_endpoint": format!("{base}/oauth/revoke"),
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
                "revocation_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
                "scopes_supported": ["mcp"],
                "authorization_response_iss_parameter_supported": true,
                "client_id_metadata_document_supported": true,
            });
            if gateway.config().oauth.allow_registration {
                metadata["registration_endpoint"] = json!(format!("{base}/oauth/register"));
            }
            respond_json(request, 200, &metadata, &cors());
        }
        (Method::Post, "/oauth/register") => register(gateway, request, body),
        (Method::Get, "/oauth/authorize") => {
            let query = request
                .url()
                .split_once('?')
                .map(|(_, q)| q.to_string())
                .unwrap_or_default();
            authorize_page(gateway, request, &parse_form(query.as_bytes()), &base)
        }
        (Method::Post, "/oauth/authorize") => consent(gateway, request, &parse_form(body), &base),
        (Method::Post, "/oauth/token") => token(gateway, request, body, &base),
        (Method::Post, "/oauth/revoke") => revoke(gateway, request, body),
        _ => respond_json(
            request,
            404,
            &json!({"error": "not_found", "error_description": format!("no OAuth endpoint {path}")}),
            &[],
        ),
    }
}

fn register(gateway: &Gateway, request: Request, body: &[u8]) {
    if !gateway.config().oauth.allow_registration {
        return respond_oauth_error(request, &OAuthError::new("access_denied", "dynamic client registration is switched off on this gateway; ask its owner to run `mcp-gateway oauth client add`").with_status(403));
    }
    let address = client_key(gateway, &request);
    if !gateway.oauth.limiter.allow(
        &format!("register:{address}"),
        REGISTRATIONS_PER_HOUR,
        std::time::Duration::from_secs(3600),
    ) {
        return respond_oauth_error(
            request,
            &OAuthError::new(
                "too_many_requests",
                "too many registrations from this address",
            ),
        );
    }
    let metadata: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return respond_oauth_error(
                request,
                &OAuthError::new(
                    "invalid_client_metadata",
                    "the body must be a JSON object (RFC 7591)",
                ),
            )
        }
    };
    if metadata.get("client_name").is_some_and(|n| !n.is_string()) {
        return respond_oauth_error(
            request,
            &OAuthError::new("invalid_client_metadata", "client_name must be a string"),
        );
    }
    let redirect_uris = crate::oauth::string_list(&metadata, "redirect_uris");
    let name = metadata
        .get("client_name")
        .and_then(Value::as_str)
        .unwrap_or("unnamed client");
    let method = metadata
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
        .unwrap_or("none");
    if let Some(types) = metadata.get("grant_types").and_then(Value::as_array) {
        if !types.iter().any(|t| t == "authorization_code") {
            return respond_oauth_error(
                request,
                &OAuthError::new(
                    "invalid_client_metadata",
                    "grant_types must include authorization_code",
                ),
            );
        }
    }
    match gateway
        .oauth
        .register(name, redirect_uris, method, "registration")
    {
        Ok((client, secret)) => {
            let mut answer = json!({
                "client_id": client.client_id,
                "client_id_issued_at": client.created,
                "client_name": client.name,
                "redirect_uris": client.redirect_uris,
                "token_endpoint_auth_method": client.auth_method,
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "scope": "mcp",
            });
            if let Some(secret) = secret {
                answer["client_secret"] = json!(secret);
                answer["client_secret_expires_at"] = json!(0);
            }
            respond_json(request, 201, &answer, &cors());
        }
        Err(e) => respond_oauth_error(request, &e),
    }
}

fn authorize_page(gateway: &Gateway, request: Request, params: &[(String, String)], base: &str) {
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let wanted = AuthorizeRequest {
        response_type: get("response_type"),
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        code_challenge: get("code_challenge"),
        code_challenge_method: get("code_challenge_method"),
        state: get("state"),
        resource: get("resource"),
        scope: get("scope"),
    };
    let address = client_key(gateway, &request);
    match gateway
        .oauth
        .start_authorization(&wanted, &resource_url(base), &address)
    {
        Ok((csrf, pending)) => {
            let backends = gateway.backends();
            let servers: Vec<&str> = backends.iter().map(|b| b.name()).collect();
            let note = if gateway.oauth.has_password() {
                None
            } else {
                Some("No owner password is set yet. On the gateway, run: mcp-gateway oauth set-password")
            };
            respond_html(
                request,
                200,
                &consent_html(&pending, &csrf, &servers, note),
                Some(&pending),
            );
        }
        Err(AuthorizeFailure::Page(message)) => {
            log::info!("OAuth authorization refused: {}", for_log(&message));
            respond_html(
                request,
                400,
                &message_html("This authorization request cannot be used", &message),
                None,
            );
        }
        Err(AuthorizeFailure::Redirect {
            redirect_uri,
            error,
            state,
        }) => {
            log::info!(
                "OAuth authorization refused: {}",
                for_log(&error.to_string())
            );
            let target = oauth::with_query(
                &redirect_uri,
                &[
                    ("error", Some(error.code)),
                    ("error_description", Some(&error.description)),
                    ("state", state.as_deref()),
                    ("iss", Some(base)),
                ],
            );
            redirect(request, &target);
        }
    }
}

fn consent(gateway: &Gateway, request: Request, form: &[(String, String)], base: &str) {
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let Some(csrf) = get("csrf_token").filter(|c| !c.is_empty()) else {
        return respond_html(
            request,
            400,
            &message_html(
                "Missing form token",
                "The form was sent without its csrf_token. Start again from the application.",
            ),
            None,
        );
    };
    let Some(pending) = gateway.oauth.pending(csrf) else {
        return respond_html(
            request,
            400,
            &message_html(
                "This page has expired",
                "The consent form is no longer valid. Start again from the application.",
            ),
            None,
        );
    };
    if get("decision") == Some("deny") {
        return match gateway.oauth.deny(csrf) {
            Some(target) => redirect(request, &oauth::with_query(&target, &[("iss", Some(base))])),
            None => respond_html(
                request,
                400,
                &message_html("This page has expired", "Start again from the application."),
                None,
            ),
        };
    }
    let address = client_key(gateway, &request);
    if let Err(e) = gateway
        .oauth
        .check_password(get("password").unwrap_or(""), &address)
    {
        let backends = gateway.backends();
        let servers: Vec<&str> = backends.iter().map(|b| b.name()).collect();
        let (status, note) = password_refusal(&e);
        let retry: Vec<(String, String)> = e
            .retry_after
            .map(|s| ("Retry-After".to_string(), s.to_string()))
            .into_iter()
            .collect();
        return respond_html_with(
            request,
            status,
            &consent_html(&pending, csrf, &servers, Some(note)),
            Some(&pending),
            &retry,
        );
    }
    let all: Vec<String> = gateway
        .backends()
        .iter()
        .map(|b| b.name().to_string())
        .collect();
    let servers = crate::policy::access::ticked_servers(
        form.iter()
            .filter(|(k, _)| k == "server")
            .map(|(_, v)| v.as_str()),
        &all,
    );
    let read_only = form
        .iter()
        .any(|(k, v)| k == "read_only" && !v.is_empty() && v != "0");
    match gateway.oauth.approve(csrf, servers, read_only) {
        Ok(target) => redirect(request, &oauth::with_query(&target, &[("iss", Some(base))])),
        Err(e) => respond_html(
            request,
            400,
            &message_html("This page has expired", &e.description),
            None,
        ),
    }
}

fn token(gateway: &Gateway, request: Request, body: &[u8], base: &str) {
    let form = parse_form(body);
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let (client_id, secret) =
        match client_credentials(&request, get("client_id"), get("client_secret")) {
            Some(c) => c,
            None => {
                return respond_oauth_error(
                    request,
                    &OAuthError::new(
                        "invalid_client",
                        "client_id is required (in the form or with HTTP Basic)",
                    ),
                )
            }
        };
    // The client is checked before anything is counted, so the limiter only ever holds keys of
    // real clients (an unknown id costs one lookup and is never stored or echoed).
    let client = match gateway
        .oauth
        .authenticate_client(&client_id, secret.as_deref())
    {
        Ok(c) => c,
        Err(e) => {
            log::info!(
                "OAuth token refused for client_id {}: {e}",
                crate::untrusted::shortened(&client_id, 60)
            );
            return respond_oauth_error(request, &e);
        }
    };
    let address = client_key(gateway, &request);
    if !gateway.oauth.limiter.allow(
        &format!("token:{}:{address}", client.client_id),
        oauth::TOKEN_REQUESTS_PER_MINUTE,
        std::time::Duration::from_secs(60),
    ) {
        log::warn!(
            "OAuth token requests from {address} for {} are rate-limited",
            for_log(&client.name)
        );
        return respond_oauth_error(
            request,
            &OAuthError::new("too_many_requests", "too many token requests; slow down"),
        );
    }
    let outcome = match get("grant_type") {
        Some("authorization_code") => match get("code") {
            Some(code) => gateway.oauth.exchange_code(
                &client,
                code,
                get("redirect_uri"),
                get("code_verifier"),
                get("resource"),
            ),
            None => Err(OAuthError::new("invalid_request", "code is required")),
        },
        Some("refresh_token") => match get("refresh_token") {
            Some(refresh) => {
                let wrong_resource =
                    get("resource").filter(|r| !oauth::same_resource(r, &resource_url(base)));
                match wrong_resource {
                    Some(r) => Err(OAuthError::new(
                        "invalid_target",
                        format!(
                            "resource {} is not this gateway",
                            crate::untrusted::shortened(r, 100)
                        ),
                    )),
                    None => gateway.oauth.refresh(&client, refresh),
                }
            }
            None => Err(OAuthError::new(
                "invalid_request",
                "refresh_token is required",
            )),
        },
        Some(other) => Err(OAuthError::new(
            "unsupported_grant_type",
            format!(
                "grant_type {} is not supported (use authorization_code or refresh_token)",
                crate::untrusted::shortened(other, 40)
            ),
        )),
        None => Err(OAuthError::new("invalid_request", "grant_type is required")),
    };
    match outcome {
        Ok(tokens) => {
            let answer = json!({
                "access_token": tokens.access_token,
                "token_type": "Bearer",
                "expires_in": tokens.expires_in,
                "refresh_token": tokens.refresh_token,
                "scope": tokens.scope,
            });
            let mut headers = cors();
            headers.push(("Pragma".into(), "no-cache".into()));
            respond_json(request, 200, &answer, &headers);
        }
        Err(e) => {
            log::info!("OAuth token refused for {}: {e}", for_log(&client.name));
            respond_oauth_error(request, &e);
        }
    }
}

fn revoke(gateway: &Gateway, request: Request, body: &[u8]) {
    let form = parse_form(body);
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if let Some((client_id, secret)) =
        client_credentials(&request, get("client_id"), get("client_secret"))
    {
        if let Err(e) = gateway
            .oauth
            .authenticate_client(&client_id, secret.as_deref())
        {
            return respond_oauth_error(request, &e);
        }
    }
    match get("token") {
        Some(token) => match gateway.oauth.revoke_token(token) {
            Ok(()) => respond_json(request, 200, &json!({}), &cors()),
            Err(e) => respond_oauth_error(request, &e),
        },
        None => respond_oauth_error(
            request,
            &OAuthError::new("invalid_request", "token is required"),
        ),
    }
}

/// client_id and secret from HTTP Basic or the form.
fn client_credentials(
    request: &Request,
    form_id: Option<&str>,
    form_secret: Option<&str>,
) -> Option<(String, Option<String>)> {
    if let Some(basic) = request_header(request, "Authorization").and_then(|v| {
        v.strip_prefix("Basic ")
            .or_else(|| v.strip_prefix("basic "))
    }) {
        let decoded =
            crate::mcp::base64::decode(basic.trim()).and_then(|b| String::from_utf8(b).ok())?;
        let (id, secret) = decoded.split_once(':')?;
        return Some((percent_decode(id), Some(percent_decode(secret))));
    }
    form_id.map(|id| (id.to_string(), form_secret.map(String::from)))
}

/// The key the limits count this request's client under: its address (from the proxy's
/// headers only with `trust_forwarded_headers`), an IPv6 address by its /64.
fn client_key(gateway: &Gateway, request: &Request) -> String {
    crate::http_util::client_address(request, gateway.config().oauth.trust_forwarded_headers)
        .map(oauth::limits::address_key)
        .unwrap_or_else(|| "unknown".into())
}

fn redirect(request: Request, location: &str) {
    let headers = [
        ("Location", location),
        ("Cache-Control", "no-store"),
        ("Referrer-Policy", "no-referrer"),
    ];
    respond_empty(
        request,
        302,
        &headers.map(|(k, v)| (k.to_string(), v.to_string())),
    );
}

fn respond_html(request: Request, status: u16, html: &str, pending: Option<&PendingAuthorization>) {
    respond_html_with(request, status, html, pending, &[])
}

fn respond_html_with(
    request: Request,
    status: u16,
    html: &str,
    pending: Option<&PendingAuthorization>,
    extra: &[(String, String)],
) {
    // form-action must also allow the redirect after the form is sent (browsers check it). The
    // origin is rebuilt from the strictly parsed redirect URI: nothing else of it gets here.
    let form_action = match pending {
        Some(p) => format!("'self' {}", p.redirect_uri.origin()),
        None => "'self'".to_string(),
    };
    let csp = format!("default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'");
    let mut response = Response::from_string(html).with_status_code(status);
    for (k, v) in [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Security-Policy", csp.as_str()),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
    ] {
        if let Some(h) = crate::http_util::header(k, v) {
            response.add_header(h);
        }
    }
    for (k, v) in extra {
        if let Some(h) = crate::http_util::header(k, v) {
            response.add_header(h);
        }
    }
    crate::metrics::note_status(status);
    let _ = request.respond(response);
}

/// Escapes text for HTML content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}h1{font-size:1.3rem}.box{border:1px solid #ccc;border-radius:8px;padding:1rem 1.2rem}.note{background:#fff4e5;border:1px solid #f0b45b;padding:.6rem;border-radius:6px}label{display:block;margin:.3rem 0}input[type=password]{width:100%;padding:.4rem;margin:.3rem 0 1rem}button{padding:.5rem 1rem;margin-right:.5rem}code{background:#f3f3f3;padding:0 .2rem}";

fn message_html(title: &str, message: &str) -> String {
    format!("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1><p>{m}</p></body></html>", t = escape_html(title), m = escape_html(message))
}

fn consent_html(
    pending: &PendingAuthorization,
    csrf: &str,
    servers: &[&str],
    note: Option<&str>,
) -> String {
    let host = pending.redirect_uri.origin();
    let mut boxes = String::new();
    for server in servers {
        boxes.push_str(&format!(
            "<label><input type=\"checkbox\" name=\"server\" value=\"{s}\" checked> {s}</label>",
            s = escape_html(server)
        ));
    }
    if servers.is_empty() {
        boxes.push_str("<p>No servers are configured yet; the gateway's own tools only.</p>");
    }
    boxes.push_str("<label><input type=\"checkbox\" name=\"read_only\" value=\"1\"> Read-only: only tools marked read-only (no switching, unlocking, deleting)</label>");
    let note = note
        .map(|n| format!("<p class=\"note\">{}</p>", escape_html(n)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>Allow access to mcp-gateway?</title><style>{STYLE}</style></head><body>\
<h1>Allow <strong>{name}</strong> to use this gateway?</h1>{note}<div class=\"box\"><p>After approval you will be sent back to <code>{host}</code>.</p>\
<form method=\"post\" action=\"/oauth/authorize\"><input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
<p>Access to these servers' tools:</p>{boxes}<label for=\"password\">Gateway owner password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" autofocus>\
<button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button><button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form></div></body></html>",
        name = escape_html(&pending.client_name),
        host = escape_html(&host),
        csrf = escape_html(csrf),
    )
}

/// Decodes `application/x-www-form-urlencoded` (also query strings).
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub fn percent_decode(text: &str) -> String {
    fn hex_value(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                out.push(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status and the sentence a person sees when the owner password was refused (the consent
/// page and the owner's page say the same).
pub(crate) fn password_refusal(e: &crate::oauth::OAuthError) -> (u16, &'static str) {
    match e.code {
        "too_many_requests" if e.retry_after.is_some() => (
            429,
            "Many wrong passwords were tried lately, so checks are paused for a moment. Wait a minute, then try again.",
        ),
        "too_many_requests" => (
            429,
            "Too many wrong passwords from your address. Wait a few minutes, then try again.",
        ),
        _ if e.description.contains("set-password") => (
            403,
            "No owner password is set yet. On the gateway, run: mcp-gateway oauth set-password",
        ),
        _ => (401, "Wrong password. Try again."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        let form = parse_form(b"a=1&redirect_uri=https%3A%2F%2Fx%2Fcb&name=two+words&empty=&flag");
        assert_eq!(form[1], ("redirect_uri".into(), "https://x/cb".into()));
        assert_eq!(form[2], ("name".into(), "two words".into()));
        assert_eq!(form[3], ("empty".into(), String::new()));
        assert_eq!(form[4], ("flag".into(), String::new()));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(
            percent_decode("%é%4"),
            "%é%4",
            "no panic on multi-byte text after %"
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
