//! The built-in OAuth 2.1 authorization server's state and rules: registered clients, the owner
//! password, pending authorizations, authorization codes, grants with their access and refresh
//! tokens, and the abuse limits. The HTTP side (endpoints, consent page) is `face::oauth`.
//!
//! Persistent state (clients, grants, the password hash; token *hashes* only) lives in
//! `oauth.json` in the state folder, written atomically and re-read when another process (the
//! CLI) changed it. Pending authorizations and codes live in memory: they last seconds.

pub mod cimd;
pub mod limits;
pub mod password;
pub mod redirect;

use crate::store;
use crate::tokens::{constant_time_eq, generate_token, hash_token, hex, now_secs};
use crate::untrusted::for_log;
use limits::{PasswordGuard, PasswordRefusal};
pub use limits::{RateLimiter, PASSWORD_ATTEMPTS, PASSWORD_WINDOW};
use redirect::RedirectUri;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const STATE_FILE: &str = "oauth.json";
/// How long the consent page stays valid.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Token requests allowed per client and address per minute.
pub const TOKEN_REQUESTS_PER_MINUTE: usize = 60;
/// Clients kept in `oauth.json`; past it the oldest registration without a grant is forgotten.
pub const MAX_CLIENTS: usize = 500;
/// Redirect URIs one client may register.
pub const MAX_REDIRECT_URIS: usize = 5;
/// Longest client name kept, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest `client_id` looked at (registered ids are 37 bytes; metadata URLs at most this).
pub const MAX_CLIENT_ID_BYTES: usize = redirect::MAX_URI_BYTES;
/// Longest `state` an authorization request may carry (it is kept while the owner decides).
pub const MAX_STATE_BYTES: usize = 1024;
const MAX_SCOPE_BYTES: usize = 256;
const MAX_PENDING: usize = 1000;
const MAX_PENDING_PER_ADDRESS: usize = 16;
const MAX_PENDING_PER_CLIENT: usize = 64;
/// Client metadata documents fetched per address per minute, and at once over all.
const CIMD_FETCHES_PER_MINUTE: usize = 10;
const CIMD_FETCHES_AT_ONCE: usize = 2;
/// A metadata document fetched this recently is not fetched again.
const CIMD_REFETCH_AFTER: Duration = Duration::from_secs(300);
/// A self-registered client without grants is forgotten after this long.
const UNUSED_CLIENT_TTL_SECS: u64 = 30 * 86_400;

/// Lifetimes, from the config's `oauth` section.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthSettings {
    /// Whether `/oauth/register` accepts new clients.
    pub allow_registration: bool,
    /// Access token lifetime.
    pub access_token_ttl: Duration,
    /// Refresh token lifetime.
    pub refresh_token_ttl: Duration,
    /// Authorization code lifetime.
    pub code_ttl: Duration,
    /// Whether `X-Forwarded-Proto`/`X-Forwarded-Host` may name our URL when `public_url` is
    /// unset, and `X-Forwarded-For`/`X-Real-IP` the client's address for the limits.
    pub trust_forwarded_headers: bool,
    /// For how long the refresh token just rotated away still works (answered with the same new
    /// pair), for a client that retries after a lost answer; zero switches it off.
    pub refresh_grace: Duration,
    /// The tool view of every grant (`full` or `search`).
    pub tool_view: crate::tool_view::ToolView,
}

impl Default for OAuthSettings {
    fn default() -> Self {
        OAuthSettings {
            allow_registration: true,
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(30 * 86_400),
            code_ttl: Duration::from_secs(60),
            trust_forwarded_headers: false,
            refresh_grace: Duration::from_secs(10),
            tool_view: crate::tool_view::ToolView::Full,
        }
    }
}

/// A registered client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Client {
    /// Its id.
    pub client_id: String,
    /// SHA-256 of its secret (confidential clients only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_sha256: Option<String>,
    /// Name shown on the consent page.
    pub name: String,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// `none`, `client_secret_post` or `client_secret_basic`.
    pub auth_method: String,
    /// Registration time.
    pub created: u64,
    /// `registration` or `cli`.
    pub source: String,
}

/// What an owner approved for a client, with the current tokens' hashes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Grant {
    /// Its id (shown by `oauth list`, used by `oauth revoke`).
    pub id: String,
    /// The client it was given to.
    pub client_id: String,
    /// Servers the grant may use (`None`: all).
    pub servers: Option<Vec<String>>,
    /// Only read-only tools (the owner ticked "read-only" on the consent page).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// The resource (audience) of its tokens.
    pub resource: String,
    /// When the owner approved it.
    pub created: u64,
    /// Hash of the current access token.
    pub access_sha256: String,
    /// Its expiry (seconds since the epoch).
    pub access_expires: u64,
    /// Hash of the current refresh token.
    pub refresh_sha256: String,
    /// Its expiry.
    pub refresh_expires: u64,
    /// Hashes of refresh tokens already rotated away: presenting one revokes the grant.
    #[serde(default)]
    pub rotated: Vec<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner_password: Option<String>,
    #[serde(default)]
    clients: Vec<Client>,
    #[serde(default)]
    grants: Vec<Grant>,
}

/// An RFC 6749 / RFC 7591 error: its code, a description, and the HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_grant`, `invalid_client`, ...
    pub code: &'static str,
    /// What was wrong.
    pub description: String,
    /// HTTP status.
    pub status: u16,
    /// Seconds to wait before trying again (`Retry-After`), for 429 answers.
    pub retry_after: Option<u64>,
}

impl OAuthError {
    /// An error with the usual status for `code`.
    pub fn new(code: &'static str, description: impl Into<String>) -> OAuthError {
        let status = match code {
            "invalid_client" => 401,
            "too_many_requests" => 429,
            "server_error" => 500,
            _ => 400,
        };
        OAuthError {
            code,
            description: description.into(),
            status,
            retry_after: None,
        }
    }

    /// The same error with another HTTP status.
    pub fn with_status(mut self, status: u16) -> OAuthError {
        self.status = status;
        self
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

/// An authorization request the owner has yet to answer. It holds only what the consent needs
/// (never the whole client), each part bounded in size.
#[derive(Debug, Clone)]
pub struct PendingAuthorization {
    /// The client's id.
    pub client_id: String,
    /// The client's name, for the consent page.
    pub client_name: String,
    /// Validated redirect URI.
    pub redirect_uri: RedirectUri,
    /// The client's `state`, passed back.
    pub state: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    /// The requested resource (ours).
    pub resource: String,
    /// Requested scope.
    pub scope: String,
    /// The address key of whoever asked (for the caps per address).
    address: String,
    created: Instant,
}

#[derive(Debug, Clone)]
struct IssuedCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    resource: String,
    servers: Option<Vec<String>>,
    read_only: bool,
    scope: String,
    expires: Instant,
    /// Set once exchanged; a second exchange revokes this grant.
    grant_id: Option<String>,
}

/// Tokens handed to a client.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedTokens {
    /// The access token (shown once).
    pub access_token: String,
    /// The refresh token (shown once).
    pub refresh_token: String,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
    /// Granted scope.
    pub scope: String,
}

/// Who an OAuth access token speaks for.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthPrincipal {
    /// The client's name.
    pub client_name: String,
    /// The grant.
    pub grant_id: String,
    /// Servers it may use (`None`: all).
    pub servers: Option<Vec<String>>,
    /// Only read-only tools.
    pub read_only: bool,
}

/// Parameters of `GET /oauth/authorize`, as received.
#[derive(Debug, Default, Clone)]
pub struct AuthorizeRequest {
    /// `response_type`
    pub response_type: Option<String>,
    /// `client_id`
    pub client_id: Option<String>,
    /// `redirect_uri`
    pub redirect_uri: Option<String>,
    /// `code_challenge`
    pub code_challenge: Option<String>,
    /// `code_challenge_method`
    pub code_challenge_method: Option<String>,
    /// `state`
    pub state: Option<String>,
    /// `resource`
    pub resource: Option<String>,
    /// `scope`
    pub scope: Option<String>,
}

/// Why an authorization request failed: shown on our page (before the redirect URI is trusted)
/// or sent back to the client's redirect URI (after).
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizeFailure {
    /// Shown on the page, never redirected.
    Page(String),
    /// Redirected to the client with `error` and `state`.
    Redirect {
        /// Where.
        redirect_uri: String,
        /// The error.
        error: OAuthError,
        /// The client's state.
        state: Option<String>,
    },
}

struct Loaded {
    stamp: Option<(SystemTime, u64)>,
    file: StateFile,
}

/// The authorization server.
pub struct OAuthServer {
    dir: PathBuf,
    /// Lifetimes and switches.
    pub settings: OAuthSettings,
    state: Mutex<Loaded>,
    pending: Mutex<HashMap<String, PendingAuthorization>>,
    codes: Mutex<HashMap<String, IssuedCode>>,
    /// Registration, token-request and metadata-fetch limits.
    pub limiter: RateLimiter,
    passwords: PasswordGuard,
    /// Refresh tokens just rotated away (by hash), with the answer they got, for the grace.
    recent_refreshes: Mutex<HashMap<String, RecentRefresh>>,
    /// When each client metadata document was last fetched.
    documents_fetched: Mutex<HashMap<String, Instant>>,
    fetches_in_flight: AtomicUsize,
    /// When each grant's access token was last accepted (seconds since the epoch), in memory
    /// only: for the owner's page.
    grants_used: Mutex<HashMap<String, u64>>,
}

/// A refresh that just happened: the pair it gave, and until when asking again gets it again.
struct RecentRefresh {
    tokens: IssuedTokens,
    new_refresh_sha256: String,
    until: Instant,
}

fn random_id(prefix: &str) -> Result<String, OAuthError> {
    generate_token()
        .map(|t| format!("{prefix}{}", &t[4..36]))
        .map_err(|e| OAuthError::new("server_error", e.to_string()))
}

fn random_secret(prefix: &str) -> Result<String, OAuthError> {
    generate_token()
        .map(|t| format!("{prefix}{}", &t[4..]))
        .map_err(|e| OAuthError::new("server_error", e.to_string()))
}

/// The S256 challenge of a PKCE verifier.
pub fn s256(verifier: &str) -> String {
    crate::mcp::base64::encode_url(&Sha256::digest(verifier.as_bytes()))
}

/// Whether a redirect URI is acceptable: see [`redirect::RedirectUri::parse`].
pub fn redirect_uri_allowed(uri: &str) -> bool {
    RedirectUri::parse(uri).is_ok()
}

/// Checks a client's redirect URIs as registered: one to [`MAX_REDIRECT_URIS`], each parsed
/// strictly. The message names the position, never the URI (it may be anything).
pub fn check_redirect_uris(uris: &[String]) -> Result<(), OAuthError> {
    if uris.is_empty() {
        return Err(OAuthError::new(
            "invalid_redirect_uri",
            "at least one redirect_uri is required",
        ));
    }
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::new(
            "invalid_redirect_uri",
            format!("at most {MAX_REDIRECT_URIS} redirect_uris may be registered"),
        ));
    }
    for (i, uri) in uris.iter().enumerate() {
        if let Err(e) = RedirectUri::parse(uri) {
            return Err(OAuthError::new(
                "invalid_redirect_uri",
                format!("redirect_uris[{i}] {e}"),
            ));
        }
    }
    Ok(())
}

/// Two resource URIs name the same resource (a trailing `/` does not matter).
pub fn same_resource(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

impl OAuthServer {
    /// Opens (or creates on first write) the state in `state_dir`.
    pub fn open(state_dir: &Path, settings: OAuthSettings) -> Result<OAuthServer, OAuthError> {
        let server = OAuthServer {
            dir: state_dir.to_path_buf(),
            settings,
            state: Mutex::new(Loaded {
                stamp: None,
                file: StateFile {
                    version: 1,
                    ..Default::default()
                },
            }),
            pending: Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
            limiter: RateLimiter::default(),
            passwords: PasswordGuard::default(),
            recent_refreshes: Mutex::new(HashMap::new()),
            documents_fetched: Mutex::new(HashMap::new()),
            fetches_in_flight: AtomicUsize::new(0),
            grants_used: Mutex::new(HashMap::new()),
        };
        server.with_state(|_| Ok(((), false)))?;
        Ok(server)
    }

    fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Runs `change` on the current state (re-read if another process changed the file); writes
    /// it back when `change` says so.
    fn with_state<T>(
        &self,
        change: impl FnOnce(&mut StateFile) -> Result<(T, bool), OAuthError>,
    ) -> Result<T, OAuthError> {
        let path = self.path();
        let mut loaded = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = std::fs::metadata(&path)
            .ok()
            .map(|m| (m.modified().unwrap_or(UNIX_EPOCH), m.len()));
        if stamp.is_some() && stamp != loaded.stamp {
            let bytes = std::fs::read(&path).map_err(|e| {
                OAuthError::new(
                    "server_error",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            loaded.file = serde_json::from_slice(&bytes).map_err(|e| {
                OAuthError::new(
                    "server_error",
                    format!("{} is damaged: {e}", path.display()),
                )
            })?;
            loaded.stamp = stamp;
        }
        let (value, dirty) = change(&mut loaded.file)?;
        if dirty {
            let now = now_secs();
            loaded.file.grants.retain(|g| g.refresh_expires > now);
            // Self-registered clients that never got (or no longer hold) a grant are forgotten
            // after a while, so registrations cannot pile up; pre-registered ones stay.
            let file = &mut loaded.file;
            let with_grants: Vec<String> =
                file.grants.iter().map(|g| g.client_id.clone()).collect();
            file.clients.retain(|c| {
                c.source == "cli"
                    || with_grants.contains(&c.client_id)
                    || c.created + UNUSED_CLIENT_TTL_SECS > now
            });
            loaded.file.version = 1;
            let bytes = serde_json::to_vec_pretty(&loaded.file)
                .map_err(|e| OAuthError::new("server_error", e.to_string()))?;
            store::ensure_dir(&self.dir)
                .and_then(|_| store::write_atomic(&path, &bytes))
                .map_err(|e| {
                    OAuthError::new(
                        "server_error",
                        format!("cannot write {}: {e}", path.display()),
                    )
                })?;
            loaded.stamp = std::fs::metadata(&path)
                .ok()
                .map(|m| (m.modified().unwrap_or(UNIX_EPOCH), m.len()));
        }
        Ok(value)
    }

    /// Sets the owner password (stored as a salted PBKDF2 hash).
    pub fn set_password(&self, password: &str) -> Result<(), OAuthError> {
        if password.chars().count() < 8 {
            return Err(OAuthError::new(
                "invalid_request",
                "the password must have at least 8 characters",
            ));
        }
        let hashed =
            password::hash_password(password).map_err(|e| OAuthError::new("server_error", e))?;
        self.with_state(|s| {
            s.owner_password = Some(hashed);
            Ok(((), true))
        })
    }

    /// Whether an owner password is set.
    pub fn has_password(&self) -> bool {
        self.with_state(|s| Ok((s.owner_password.is_some(), false)))
            .unwrap_or(false)
    }

    /// Registers a client. Returns it and, for confidential clients, its secret (shown once).
    /// When [`MAX_CLIENTS`] are kept, the oldest self-registered client without a grant makes
    /// room (DCR clients such as Claude.ai register again on every fresh connection).
    pub fn register(
        &self,
        name: &str,
        redirect_uris: Vec<String>,
        auth_method: &str,
        source: &str,
    ) -> Result<(Client, Option<String>), OAuthError> {
        check_redirect_uris(&redirect_uris)?;
        if !matches!(
            auth_method,
            "none" | "client_secret_post" | "client_secret_basic"
        ) {
            return Err(OAuthError::new("invalid_client_metadata", "token_endpoint_auth_method is not supported (use none, client_secret_post or client_secret_basic)"));
        }
        let secret = if auth_method == "none" {
            None
        } else {
            Some(random_secret("mgws_")?)
        };
        let mut name = crate::untrusted::clean_name(name, MAX_NAME_CHARS);
        if name.is_empty() {
            name = "unnamed client".into();
        }
        let client = Client {
            client_id: random_id("mgwc_")?,
            secret_sha256: secret.as_deref().map(hash_token),
            name,
            redirect_uris,
            auth_method: auth_method.to_string(),
            created: now_secs(),
            source: source.to_string(),
        };
        self.with_state(|s| {
            make_room_for_a_client(s)?;
            s.clients.push(client.clone());
            Ok(((), true))
        })?;
        log::info!(
            "OAuth client registered: {} ({}, {})",
            for_log(&client.name),
            client.client_id,
            source
        );
        Ok((client, secret))
    }

    /// The client a Client ID Metadata Document at `url` describes: fetched (at most every few
    /// minutes per URL, a few per minute per address, two at once), and kept so that its
    /// tokens can be refreshed later; the state file is written only when something changed.
    fn metadata_client(&self, url: &str, address: &str) -> Result<Client, String> {
        let known = self.client(url);
        let fetched_recently = {
            let mut fetched = self
                .documents_fetched
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            fetched.retain(|_, at| at.elapsed() < CIMD_REFETCH_AFTER);
            fetched.contains_key(url)
        };
        if let (Some(client), true) = (&known, fetched_recently) {
            return Ok(client.clone());
        }
        let refused = "The application's client metadata could not be used: its client_id URL could not be fetched. Try again in a minute.".to_string();
        if !self.limiter.allow(
            &format!("cimd:{address}"),
            CIMD_FETCHES_PER_MINUTE,
            Duration::from_secs(60),
        ) {
            return Err(refused);
        }
        let Some(slot) = limits::Slot::take(&self.fetches_in_flight, CIMD_FETCHES_AT_ONCE) else {
            return Err(refused);
        };
        let fetched = cimd::fetch_client(url)
            .map_err(|e| format!("The application's client metadata could not be used: {e}"));
        drop(slot);
        let fetched = fetched?;
        {
            let mut at = self
                .documents_fetched
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if at.len() < MAX_CLIENTS {
                at.insert(url.to_string(), Instant::now());
            }
        }
        let unchanged = known
            .as_ref()
            .is_some_and(|k| k.name == fetched.name && k.redirect_uris == fetched.redirect_uris);
        if unchanged {
            return known.ok_or(refused);
        }
        self.with_state(|s| {
            match s
                .clients
                .iter_mut()
                .find(|c| c.client_id == fetched.client_id)
            {
                Some(known) => {
                    known.name = fetched.name.clone();
                    known.redirect_uris = fetched.redirect_uris.clone();
                }
                None => {
                    make_room_for_a_client(s)?;
                    s.clients.push(fetched.clone());
                }
            }
            Ok(((), true))
        })
        .map_err(|e| e.description)?;
        Ok(fetched)
    }

    /// The client with `client_id`.
    pub fn client(&self, client_id: &str) -> Option<Client> {
        self.with_state(|s| {
            Ok((
                s.clients.iter().find(|c| c.client_id == client_id).cloned(),
                false,
            ))
        })
        .ok()
        .flatten()
    }

    /// Checks an authorization request from `address` (an address key). Errors before the
    /// client and redirect URI are known good are for our page; so are all errors of clients
    /// that registered themselves (RFC 9700 4.11.2: no redirect to a URI anyone could register);
    /// later errors of clients the owner added go back to the client.
    pub fn start_authorization(
        &self,
        request: &AuthorizeRequest,
        our_resource: &str,
        address: &str,
    ) -> Result<(String, PendingAuthorization), AuthorizeFailure> {
        let client_id = request
            .client_id
            .as_deref()
            .ok_or_else(|| AuthorizeFailure::Page("The request has no client_id.".into()))?;
        if client_id.len() > MAX_CLIENT_ID_BYTES {
            return Err(AuthorizeFailure::Page(
                "The request's client_id is too long to be a client of this gateway.".into(),
            ));
        }
        let client = if cimd::is_document_url(client_id) {
            self.metadata_client(client_id, address)
                .map_err(AuthorizeFailure::Page)?
        } else {
            self.client(client_id).ok_or_else(|| {
                AuthorizeFailure::Page(
                    "This application is not registered with the gateway (it may have been removed). Connect it again from the application.".into(),
                )
            })?
        };
        let redirect_uri = match request.redirect_uri.as_deref() {
            Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.to_string(),
            Some(_) => {
                return Err(AuthorizeFailure::Page(format!(
                    "The redirect address in the request is not registered for {}.",
                    client.name
                )))
            }
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            None => {
                return Err(AuthorizeFailure::Page(
                    "The request has no redirect_uri.".into(),
                ))
            }
        };
        // Checked again here: a state file written by an older version may hold anything.
        let redirect_uri = RedirectUri::parse(&redirect_uri).map_err(|e| {
            AuthorizeFailure::Page(format!(
                "The redirect address registered for this application cannot be used: it {e}. Remove the application with `mcp-gateway oauth revoke` and connect it again."
            ))
        })?;
        let fail = |code: &'static str, description: String| {
            if client.source == "cli" {
                AuthorizeFailure::Redirect {
                    redirect_uri: redirect_uri.as_str().to_string(),
                    error: OAuthError::new(code, description),
                    state: request.state.clone(),
                }
            } else {
                AuthorizeFailure::Page(format!("The application sent a request the gateway cannot accept ({code}): {description}."))
            }
        };
        if request.response_type.as_deref() != Some("code") {
            return Err(fail(
                "unsupported_response_type",
                "response_type must be \"code\"".into(),
            ));
        }
        if request
            .state
            .as_ref()
            .is_some_and(|s| s.len() > MAX_STATE_BYTES)
            || request
                .scope
                .as_ref()
                .is_some_and(|s| s.len() > MAX_SCOPE_BYTES)
        {
            return Err(AuthorizeFailure::Page(format!(
                "The request's state or scope is too long (at most {MAX_STATE_BYTES} and {MAX_SCOPE_BYTES} bytes)."
            )));
        }
        let challenge = request
            .code_challenge
            .clone()
            .filter(|c| (43..=128).contains(&c.len()))
            .ok_or_else(|| {
                fail(
                    "invalid_request",
                    "a PKCE code_challenge (43 to 128 characters) is required".into(),
                )
            })?;
        if request.code_challenge_method.as_deref() != Some("S256") {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not accepted)".into(),
            ));
        }
        let resource = request
            .resource
            .clone()
            .unwrap_or_else(|| our_resource.to_string());
        if !same_resource(&resource, our_resource) {
            return Err(fail(
                "invalid_target",
                "the resource is not this gateway's MCP endpoint".into(),
            ));
        }
        let pending = PendingAuthorization {
            client_id: client.client_id.clone(),
            client_name: client.name.clone(),
            redirect_uri,
            state: request.state.clone(),
            code_challenge: challenge,
            resource: our_resource.to_string(),
            scope: request.scope.clone().unwrap_or_else(|| "mcp".into()),
            address: address.to_string(),
            created: Instant::now(),
        };
        let csrf = random_secret("").map_err(|e| AuthorizeFailure::Page(e.description))?;
        let mut all = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, p| p.created.elapsed() < PENDING_TTL);
        // Caps per address, per client and over all; the oldest waiting request makes room, so
        // a flood never keeps the owner's own authorization out.
        drop_oldest_pending(&mut all, MAX_PENDING_PER_ADDRESS, |p| p.address == address);
        drop_oldest_pending(&mut all, MAX_PENDING_PER_CLIENT, |p| {
            p.client_id == pending.client_id
        });
        drop_oldest_pending(&mut all, MAX_PENDING, |_| true);
        all.insert(csrf.clone(), pending.clone());
        Ok((csrf, pending))
    }

    /// The pending authorization behind a consent form's CSRF token.
    pub fn pending(&self, csrf: &str) -> Option<PendingAuthorization> {
        let all = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .find(|(k, p)| {
                constant_time_eq(k.as_bytes(), csrf.as_bytes()) && p.created.elapsed() < PENDING_TTL
            })
            .map(|(_, p)| p.clone())
    }

    /// Checks the owner password for a consent form from `address` (an address key): at most
    /// [`PASSWORD_ATTEMPTS`] wrong ones per address in [`PASSWORD_WINDOW`], and a global
    /// back-off (up to a minute between checks) once wrong passwords pile up from everywhere.
    pub fn check_password(&self, password: &str, address: &str) -> Result<(), OAuthError> {
        let stored = self.with_state(|s| Ok((s.owner_password.clone(), false)))?;
        let Some(stored) = stored else {
            return Err(OAuthError::new(
                "access_denied",
                "no owner password is set: run `mcp-gateway oauth set-password` on the gateway",
            ));
        };
        match self
            .passwords
            .check(address, || password::verify_password(password, &stored))
        {
            Ok(true) => Ok(()),
            Ok(false) => {
                log::warn!("OAuth consent: wrong owner password from {address}");
                Err(OAuthError::new("access_denied", "wrong password"))
            }
            Err(PasswordRefusal::Address) => {
                log::warn!("OAuth consent refused for {address}: too many wrong passwords");
                Err(OAuthError::new(
                    "too_many_requests",
                    "too many wrong passwords from your address; wait a few minutes",
                ))
            }
            Err(PasswordRefusal::Backoff(wait)) => {
                log::warn!("OAuth consent refused for {address}: many wrong passwords lately, checks are paused");
                let mut error = OAuthError::new(
                    "too_many_requests",
                    "many wrong passwords were tried lately; wait a little, then try again",
                );
                error.retry_after = Some(wait.as_secs() + 1);
                Err(error)
            }
        }
    }

    /// The owner approved `csrf`'s request for `servers` (and only read-only tools when
    /// `read_only`): issues a code; returns the redirect.
    pub fn approve(
        &self,
        csrf: &str,
        servers: Option<Vec<String>>,
        read_only: bool,
    ) -> Result<String, OAuthError> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(csrf)
            .ok_or_else(|| {
                OAuthError::new(
                    "invalid_request",
                    "this consent page has expired; start again from the application",
                )
            })?;
        let code = random_secret("mgwk_")?;
        let issued = IssuedCode {
            client_id: pending.client_id.clone(),
            redirect_uri: pending.redirect_uri.as_str().to_string(),
            code_challenge: pending.code_challenge.clone(),
            resource: pending.resource.clone(),
            servers,
            read_only,
            scope: pending.scope.clone(),
            expires: Instant::now() + self.settings.code_ttl,
            grant_id: None,
        };
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        codes.retain(|_, c| c.expires + Duration::from_secs(600) > Instant::now());
        codes.insert(hash_token(&code), issued);
        log::info!(
            "OAuth authorization approved for {}",
            for_log(&pending.client_name)
        );
        Ok(with_query(
            pending.redirect_uri.as_str(),
            &[
                ("code", Some(code.as_str())),
                ("state", pending.state.as_deref()),
            ],
        ))
    }

    /// The owner denied `csrf`'s request; returns the redirect.
    pub fn deny(&self, csrf: &str) -> Option<String> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(csrf)?;
        log::info!(
            "OAuth authorization denied for {}",
            for_log(&pending.client_name)
        );
        Some(with_query(
            pending.redirect_uri.as_str(),
            &[
                ("error", Some("access_denied")),
                ("state", pending.state.as_deref()),
            ],
        ))
    }

    /// Authenticates the client at the token endpoint.
    pub fn authenticate_client(
        &self,
        client_id: &str,
        secret: Option<&str>,
    ) -> Result<Client, OAuthError> {
        let unknown = || {
            OAuthError::new(
                "invalid_client",
                "unknown client_id (the gateway may have forgotten the registration); register again",
            )
        };
        if client_id.len() > MAX_CLIENT_ID_BYTES {
            return Err(unknown());
        }
        let client = self.client(client_id).ok_or_else(unknown)?;
        match (&client.secret_sha256, secret) {
            (None, _) => Ok(client),
            (Some(expected), Some(given))
                if constant_time_eq(expected.as_bytes(), hash_token(given).as_bytes()) =>
            {
                Ok(client)
            }
            (Some(_), _) => Err(OAuthError::new(
                "invalid_client",
                "client authentication failed",
            )),
        }
    }

    /// `grant_type=authorization_code`.
    pub fn exchange_code(
        &self,
        client: &Client,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        resource: Option<&str>,
    ) -> Result<IssuedTokens, OAuthError> {
        let key = hash_token(code);
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        let Some(issued) = codes.get_mut(&key) else {
            return Err(OAuthError::new(
                "invalid_grant",
                "unknown authorization code",
            ));
        };
        if let Some(grant_id) = issued.grant_id.clone() {
            drop(codes);
            log::warn!(
                "OAuth code reused by {}: revoking the tokens issued for it",
                client.name
            );
            let _ = self.revoke_grant(&grant_id);
            return Err(OAuthError::new(
                "invalid_grant",
                "the authorization code was already used",
            ));
        }
        if issued.expires < Instant::now() {
            return Err(OAuthError::new(
                "invalid_grant",
                "the authorization code has expired",
            ));
        }
        if issued.client_id != client.client_id {
            return Err(OAuthError::new(
                "invalid_grant",
                "the authorization code was issued to another client",
            ));
        }
        if redirect_uri != Some(issued.redirect_uri.as_str()) {
            return Err(OAuthError::new(
                "invalid_grant",
                "redirect_uri does not match the authorization request",
            ));
        }
        let Some(verifier) = verifier else {
            return Err(OAuthError::new(
                "invalid_request",
                "code_verifier is required",
            ));
        };
        if !constant_time_eq(s256(verifier).as_bytes(), issued.code_challenge.as_bytes()) {
            return Err(OAuthError::new(
                "invalid_grant",
                "code_verifier does not match the code_challenge",
            ));
        }
        if let Some(r) = resource {
            if !same_resource(r, &issued.resource) {
                return Err(OAuthError::new(
                    "invalid_target",
                    format!("resource {r} is not the one authorized"),
                ));
            }
        }
        let grant_id = random_id("mgwg_")?;
        issued.grant_id = Some(grant_id.clone());
        let (servers, read_only, resource, scope) = (
            issued.servers.clone(),
            issued.read_only,
            issued.resource.clone(),
            issued.scope.clone(),
        );
        drop(codes);
        let (access, refresh) = (random_secret("mgwa_")?, random_secret("mgwr_")?);
        let now = now_secs();
        let grant = Grant {
            id: grant_id,
            client_id: client.client_id.clone(),
            servers,
            read_only,
            resource,
            created: now,
            access_sha256: hash_token(&access),
            access_expires: now + self.settings.access_token_ttl.as_secs(),
            refresh_sha256: hash_token(&refresh),
            refresh_expires: now + self.settings.refresh_token_ttl.as_secs(),
            rotated: Vec::new(),
        };
        self.with_state(|s| {
            s.grants.push(grant.clone());
            Ok(((), true))
        })?;
        log::info!(
            "OAuth tokens issued to {} (grant {})",
            client.name,
            grant.id
        );
        Ok(IssuedTokens {
            access_token: access,
            refresh_token: refresh,
            expires_in: self.settings.access_token_ttl.as_secs(),
            scope,
        })
    }

    /// `grant_type=refresh_token`: rotates both tokens; a rotated-away refresh token revokes the
    /// grant, except the one just rotated away within `refresh_grace`, which gets the same new
    /// pair again (a client that lost the answer, or two refreshes racing, keeps its grant).
    pub fn refresh(
        &self,
        client: &Client,
        refresh_token: &str,
    ) -> Result<IssuedTokens, OAuthError> {
        let presented = hash_token(refresh_token);
        let (access, refresh) = (random_secret("mgwa_")?, random_secret("mgwr_")?);
        let settings = self.settings.clone();
        let mut recent = self
            .recent_refreshes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        recent.retain(|_, r| r.until > Instant::now());
        let outcome = self.with_state(|s| {
            let now = now_secs();
            if let Some(again) = recent.get(&presented) {
                let current = s.grants.iter().any(|g| {
                    g.client_id == client.client_id
                        && constant_time_eq(
                            g.refresh_sha256.as_bytes(),
                            again.new_refresh_sha256.as_bytes(),
                        )
                });
                if current {
                    log::info!("OAuth refresh repeated within the grace period: same tokens");
                    return Ok((Ok(Some(again.tokens.clone())), false));
                }
            }
            if let Some(i) = s.grants.iter().position(|g| {
                g.rotated
                    .iter()
                    .any(|r| constant_time_eq(r.as_bytes(), presented.as_bytes()))
            }) {
                let grant = s.grants.remove(i);
                log::warn!(
                    "OAuth refresh token reused for grant {}: the grant is revoked",
                    grant.id
                );
                return Ok((
                    Err(OAuthError::new(
                        "invalid_grant",
                        "this refresh token was already used; the grant has been revoked",
                    )),
                    true,
                ));
            }
            let Some(grant) = s
                .grants
                .iter_mut()
                .find(|g| constant_time_eq(g.refresh_sha256.as_bytes(), presented.as_bytes()))
            else {
                return Ok((
                    Err(OAuthError::new(
                        "invalid_grant",
                        "unknown or revoked refresh token",
                    )),
                    false,
                ));
            };
            if grant.client_id != client.client_id {
                return Ok((
                    Err(OAuthError::new(
                        "invalid_grant",
                        "the refresh token was issued to another client",
                    )),
                    false,
                ));
            }
            if grant.refresh_expires <= now {
                return Ok((
                    Err(OAuthError::new(
                        "invalid_grant",
                        "the refresh token has expired",
                    )),
                    false,
                ));
            }
            let old = std::mem::replace(&mut grant.refresh_sha256, hash_token(&refresh));
            grant.rotated.push(old);
            if grant.rotated.len() > 50 {
                grant.rotated.remove(0);
            }
            grant.refresh_expires = now + settings.refresh_token_ttl.as_secs();
            grant.access_sha256 = hash_token(&access);
            grant.access_expires = now + settings.access_token_ttl.as_secs();
            log::info!("OAuth tokens refreshed for grant {}", grant.id);
            Ok((Ok(None), true))
        })?;
        if let Some(same) = outcome? {
            return Ok(same);
        }
        let tokens = IssuedTokens {
            access_token: access,
            refresh_token: refresh,
            expires_in: self.settings.access_token_ttl.as_secs(),
            scope: "mcp".into(),
        };
        if !self.settings.refresh_grace.is_zero() {
            recent.insert(
                presented,
                RecentRefresh {
                    tokens: tokens.clone(),
                    new_refresh_sha256: hash_token(&tokens.refresh_token),
                    until: Instant::now() + self.settings.refresh_grace,
                },
            );
        }
        Ok(tokens)
    }

    /// RFC 7009: ends the grant of an access or refresh token. Unknown tokens are not an error.
    pub fn revoke_token(&self, token: &str) -> Result<(), OAuthError> {
        let hash = hash_token(token);
        self.with_state(|s| {
            let before = s.grants.len();
            s.grants.retain(|g| {
                !(constant_time_eq(g.access_sha256.as_bytes(), hash.as_bytes())
                    || constant_time_eq(g.refresh_sha256.as_bytes(), hash.as_bytes()))
            });
            let changed = s.grants.len() != before;
            if changed {
                log::info!("OAuth token revoked by its client");
            }
            Ok(((), changed))
        })
    }

    /// Ends a grant, or a client with all its grants, by id.
    pub fn revoke_grant(&self, id: &str) -> Result<bool, OAuthError> {
        self.with_state(|s| {
            let before = (s.grants.len(), s.clients.len());
            s.grants.retain(|g| g.id != id && g.client_id != id);
            s.clients.retain(|c| c.client_id != id);
            let changed = before != (s.grants.len(), s.clients.len());
            if changed {
                log::info!("OAuth {id} revoked");
            }
            Ok((changed, changed))
        })
    }

    /// The principal of a valid, unexpired access token for `resource`.
    pub fn verify_access(&self, token: &str, resource: &str) -> Option<OAuthPrincipal> {
        if !token.starts_with("mgwa_") {
            return None;
        }
        let hash = hash_token(token);
        self.with_state(|s| {
            let now = now_secs();
            let mut found = None;
            for grant in &s.grants {
                if constant_time_eq(grant.access_sha256.as_bytes(), hash.as_bytes()) {
                    found = Some(grant.clone());
                }
            }
            let principal = found
                .filter(|g| g.access_expires > now && same_resource(&g.resource, resource))
                .map(|g| {
                    let client_name = s
                        .clients
                        .iter()
                        .find(|c| c.client_id == g.client_id)
                        .map(|c| c.name.clone())
                        .unwrap_or_else(|| g.client_id.clone());
                    let mut used = self.grants_used.lock().unwrap_or_else(|e| e.into_inner());
                    if used.len() >= MAX_CLIENTS * 4 {
                        used.clear();
                    }
                    used.insert(g.id.clone(), now);
                    drop(used);
                    OAuthPrincipal {
                        client_name,
                        grant_id: g.id,
                        servers: g.servers,
                        read_only: g.read_only,
                    }
                });
            Ok((principal, false))
        })
        .ok()
        .flatten()
    }

    /// When each grant was last used by this process (grant id to seconds since the epoch).
    pub fn grants_last_used(&self) -> HashMap<String, u64> {
        self.grants_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Clients and grants, for `oauth list`.
    pub fn list(&self) -> Result<(Vec<Client>, Vec<Grant>), OAuthError> {
        self.with_state(|s| Ok(((s.clients.clone(), s.grants.clone()), false)))
    }
}

/// Makes room for one more client when [`MAX_CLIENTS`] are kept: forgets the oldest client
/// that registered itself (or came from a metadata document) and holds no grant.
fn make_room_for_a_client(s: &mut StateFile) -> Result<(), OAuthError> {
    while s.clients.len() >= MAX_CLIENTS {
        let unused = s
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.source != "cli" && !s.grants.iter().any(|g| g.client_id == c.client_id)
            })
            .min_by_key(|(_, c)| c.created)
            .map(|(i, _)| i);
        match unused {
            Some(i) => {
                let gone = s.clients.remove(i);
                log::info!(
                    "OAuth client {} ({}) forgotten to make room: it never got a grant",
                    for_log(&gone.name),
                    for_log(&gone.client_id)
                );
            }
            None => {
                return Err(OAuthError::new(
                    "invalid_client_metadata",
                    "the gateway holds as many clients as it can; its owner can remove some with `mcp-gateway oauth revoke`",
                ))
            }
        }
    }
    Ok(())
}

/// Drops the oldest pending authorizations matching `mine` until fewer than `cap` remain.
fn drop_oldest_pending(
    all: &mut HashMap<String, PendingAuthorization>,
    cap: usize,
    mine: impl Fn(&PendingAuthorization) -> bool,
) {
    loop {
        let matching: Vec<(&String, &PendingAuthorization)> =
            all.iter().filter(|(_, p)| mine(p)).collect();
        if matching.len() < cap {
            return;
        }
        let oldest = matching
            .iter()
            .min_by_key(|(_, p)| p.created)
            .map(|(k, _)| (*k).clone());
        match oldest {
            Some(key) => all.remove(&key),
            None => return,
        };
    }
}

/// The strings of the list `key` of a JSON object (other entries skipped; none if absent).
pub fn string_list(object: &serde_json::Value, key: &str) -> Vec<String> {
    let items = object.get(key).and_then(serde_json::Value::as_array);
    items
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Appends query parameters to a URL.
pub fn with_query(url: &str, params: &[(&str, Option<&str>)]) -> String {
    let mut out = url.to_string();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        if let Some(v) = v {
            out.push(sep);
            out.push_str(k);
            out.push('=');
            out.push_str(&percent_encode(v));
            sep = '&';
        }
    }
    out
}

/// Percent-encodes everything but unreserved characters.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Hex SHA-256, re-exported for callers that log ids derived from tokens.
pub fn fingerprint(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes())[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(tag: &str) -> (OAuthServer, PathBuf) {
        let dir = std::env::temp_dir().join(format!("mcpgw-oauth-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (
            OAuthServer::open(&dir, OAuthSettings::default()).expect("open"),
            dir,
        )
    }

    const RESOURCE: &str = "https://gw.example/mcp";
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn authorize(s: &OAuthServer, client: &Client) -> String {
        let request = AuthorizeRequest {
            resource: Some(format!("{RESOURCE}/")),
            ..request_for(client)
        };
        let (csrf, _) = s
            .start_authorization(&request, RESOURCE, "192.0.2.1")
            .expect("pending");
        let redirect = s.approve(&csrf, None, false).expect("approve");
        assert!(redirect.contains("state=xyz"));
        redirect
            .split("code=")
            .nth(1)
            .and_then(|c| c.split('&').next())
            .expect("code")
            .to_string()
    }

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            s256(VERIFIER),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn redirect_uris() {
        assert!(redirect_uri_allowed(
            "https://claude.ai/api/mcp/auth_callback"
        ));
        assert!(redirect_uri_allowed("http://127.0.0.1:33418/callback"));
        assert!(redirect_uri_allowed("http://localhost/cb"));
        assert!(redirect_uri_allowed("http://[::1]:5/cb"));
        assert!(!redirect_uri_allowed("http://evil.example/cb"));
        assert!(!redirect_uri_allowed("http://localhost.evil.example/cb"));
        assert!(!redirect_uri_allowed("https://x/cb#frag"));
        assert!(!redirect_uri_allowed("javascript:alert(1)"));
    }

    #[test]
    fn code_flow_refresh_rotation_and_reuse_without_a_grace() {
        let (_, dir) = server("flow");
        let no_grace = OAuthSettings {
            refresh_grace: Duration::ZERO,
            ..OAuthSettings::default()
        };
        let s = OAuthServer::open(&dir, no_grace).expect("open");
        let (client, secret) = s
            .register(
                "Claude",
                vec!["https://claude.ai/api/mcp/auth_callback".into()],
                "none",
                "registration",
            )
            .expect("register");
        assert!(secret.is_none());
        let code = authorize(&s, &client);
        let redirect = Some(client.redirect_uris[0].as_str());
        assert_eq!(
            s.exchange_code(
                &client,
                &code,
                redirect,
                Some("wrong-verifier-wrong-verifier-wrong-verifier"),
                None
            )
            .unwrap_err()
            .code,
            "invalid_grant"
        );
        let tokens = s
            .exchange_code(&client, &code, redirect, Some(VERIFIER), Some(RESOURCE))
            .expect("tokens");
        assert!(s.verify_access(&tokens.access_token, RESOURCE).is_some());
        assert!(
            s.verify_access(&tokens.access_token, "https://other.example/mcp")
                .is_none(),
            "audience"
        );
        // The code is single-use; reusing it revokes what it gave.
        assert_eq!(
            s.exchange_code(&client, &code, redirect, Some(VERIFIER), None)
                .unwrap_err()
                .code,
            "invalid_grant"
        );
        assert!(s.verify_access(&tokens.access_token, RESOURCE).is_none());

        let code = authorize(&s, &client);
        let first = s
            .exchange_code(&client, &code, redirect, Some(VERIFIER), None)
            .expect("tokens");
        let second = s.refresh(&client, &first.refresh_token).expect("refresh");
        assert!(
            s.verify_access(&first.access_token, RESOURCE).is_none(),
            "old access token replaced"
        );
        assert!(s.verify_access(&second.access_token, RESOURCE).is_some());
        // Persisted: a new server over the same folder knows the grant.
        let reopened = OAuthServer::open(&dir, OAuthSettings::default()).expect("reopen");
        assert!(reopened
            .verify_access(&second.access_token, RESOURCE)
            .is_some());
        let on_disk = std::fs::read_to_string(dir.join(STATE_FILE)).expect("file");
        assert!(
            !on_disk.contains(&second.access_token) && !on_disk.contains(&second.refresh_token)
        );
        // Reusing the rotated refresh token revokes the whole grant.
        assert_eq!(
            s.refresh(&client, &first.refresh_token).unwrap_err().code,
            "invalid_grant"
        );
        assert!(s.verify_access(&second.access_token, RESOURCE).is_none());
        assert_eq!(
            s.refresh(&client, &second.refresh_token).unwrap_err().code,
            "invalid_grant"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn authorization_errors_go_to_the_page_or_the_client() {
        let (s, dir) = server("errors");
        let (client, _) = s
            .register("App", vec!["https://app.example/cb".into()], "none", "cli")
            .expect("register");
        let mut request = AuthorizeRequest {
            client_id: Some("nope".into()),
            ..Default::default()
        };
        assert!(matches!(
            s.start_authorization(&request, RESOURCE, "192.0.2.1"),
            Err(AuthorizeFailure::Page(_))
        ));
        request.client_id = Some(client.client_id.clone());
        request.redirect_uri = Some("https://evil.example/cb".into());
        assert!(
            matches!(
                s.start_authorization(&request, RESOURCE, "192.0.2.1"),
                Err(AuthorizeFailure::Page(_))
            ),
            "no open redirect"
        );
        request.redirect_uri = Some("https://app.example/cb".into());
        request.response_type = Some("code".into());
        request.code_challenge = Some(s256(VERIFIER));
        request.code_challenge_method = Some("plain".into());
        match s.start_authorization(&request, RESOURCE, "192.0.2.1") {
            Err(AuthorizeFailure::Redirect { error, .. }) => {
                assert_eq!(error.code, "invalid_request")
            }
            other => panic!("{other:?}"),
        }
        request.code_challenge_method = Some("S256".into());
        request.resource = Some("https://other.example/mcp".into());
        match s.start_authorization(&request, RESOURCE, "192.0.2.1") {
            Err(AuthorizeFailure::Redirect { error, .. }) => {
                assert_eq!(error.code, "invalid_target")
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn request_for(client: &Client) -> AuthorizeRequest {
        AuthorizeRequest {
            response_type: Some("code".into()),
            client_id: Some(client.client_id.clone()),
            redirect_uri: Some(client.redirect_uris[0].clone()),
            code_challenge: Some(s256(VERIFIER)),
            code_challenge_method: Some("S256".into()),
            state: Some("xyz".into()),
            resource: None,
            scope: None,
        }
    }

    #[test]
    fn a_self_registered_client_gets_every_error_on_our_page() {
        let (s, dir) = server("no-open-redirect");
        let client = self_registered(&s, "https://evil.example/");
        let mut request = request_for(&client);
        request.response_type = Some("token".into());
        assert!(matches!(
            s.start_authorization(&request, RESOURCE, "192.0.2.1"),
            Err(AuthorizeFailure::Page(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn registrations_are_bounded_and_the_oldest_unused_make_room() {
        let (s, dir) = server("bounded");
        let uri = || vec!["https://app.example/cb".to_string()];
        assert_eq!(
            s.register("x", vec![], "none", "registration")
                .unwrap_err()
                .code,
            "invalid_redirect_uri"
        );
        let six = (0..6).map(|i| format!("https://app.example/{i}")).collect();
        assert_eq!(
            s.register("x", six, "none", "registration")
                .unwrap_err()
                .code,
            "invalid_redirect_uri"
        );
        let (named, _) = s
            .register("a\nforged line\u{1b}[31m", uri(), "none", "registration")
            .expect("register");
        assert_eq!(named.name, "aforged line[31m");
        let (kept, _) = s
            .register("kept", uri(), "none", "registration")
            .expect("register");
        let code = authorize(&s, &kept);
        let tokens = s
            .exchange_code(
                &kept,
                &code,
                Some("https://app.example/cb"),
                Some(VERIFIER),
                None,
            )
            .expect("tokens");
        for i in 0..MAX_CLIENTS + 20 {
            s.register(&format!("c{i}"), uri(), "none", "registration")
                .expect("room is made");
        }
        let (clients, _) = s.list().expect("list");
        assert_eq!(clients.len(), MAX_CLIENTS);
        assert!(
            clients.iter().any(|c| c.client_id == kept.client_id),
            "a client with a grant stays"
        );
        assert!(
            !clients.iter().any(|c| c.client_id == named.client_id),
            "the oldest unused went"
        );
        assert!(s.verify_access(&tokens.access_token, RESOURCE).is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn waiting_authorizations_are_capped_oldest_first() {
        let (s, dir) = server("pending-caps");
        let client = self_registered(&s, "https://app.example/cb");
        let request = request_for(&client);
        let (first, _) = s
            .start_authorization(&request, RESOURCE, "198.51.100.9")
            .expect("pending");
        for _ in 0..(MAX_PENDING + 50) {
            s.start_authorization(&request, RESOURCE, "203.0.113.1")
                .expect("a flood never refuses");
        }
        let all = s.pending.lock().expect("lock");
        assert!(all.len() <= MAX_PENDING);
        let from_flood = all.values().filter(|p| p.address == "203.0.113.1").count();
        assert_eq!(from_flood, MAX_PENDING_PER_ADDRESS);
        assert!(
            all.contains_key(&first),
            "another address's request survives the flood"
        );
        drop(all);
        let mut long = request_for(&client);
        long.state = Some("s".repeat(MAX_STATE_BYTES + 1));
        assert!(matches!(
            s.start_authorization(&long, RESOURCE, "203.0.113.1"),
            Err(AuthorizeFailure::Page(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A client that registered itself with one redirect URI.
    fn self_registered(s: &OAuthServer, uri: &str) -> Client {
        s.register("App", vec![uri.into()], "none", "registration")
            .expect("register")
            .0
    }

    /// A client of `s` and the tokens of a grant it got.
    fn granted(s: &OAuthServer) -> (Client, IssuedTokens) {
        let uri = "https://app.example/cb";
        let client = self_registered(s, uri);
        let code = authorize(s, &client);
        let tokens = s
            .exchange_code(&client, &code, Some(uri), Some(VERIFIER), None)
            .expect("tokens");
        (client, tokens)
    }

    #[test]
    fn a_repeated_refresh_within_the_grace_gets_the_same_pair_and_later_revokes() {
        let (s, dir) = server("grace");
        let (client, first) = granted(&s);
        let second = s.refresh(&client, &first.refresh_token).expect("refresh");
        let again = s
            .refresh(&client, &first.refresh_token)
            .expect("within the grace");
        assert_eq!(second, again);
        assert!(s.verify_access(&second.access_token, RESOURCE).is_some());
        // Once the new refresh token has been used, the old one is plain reuse.
        let third = s.refresh(&client, &second.refresh_token).expect("refresh");
        assert_eq!(
            s.refresh(&client, &first.refresh_token).unwrap_err().code,
            "invalid_grant"
        );
        assert!(
            s.verify_access(&third.access_token, RESOURCE).is_none(),
            "revoked"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unknown_client_id_is_neither_echoed_nor_kept() {
        let (s, dir) = server("unknown-client");
        let huge = "x".repeat(1 << 20);
        let err = s.authenticate_client(&huge, None).unwrap_err();
        assert_eq!(err.code, "invalid_client");
        assert!(err.description.len() < 200);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn password_attempts_are_limited_per_address() {
        let (s, dir) = server("password");
        s.set_password("correct horse battery").expect("set");
        assert!(s
            .check_password("correct horse battery", "10.0.0.1")
            .is_ok());
        for _ in 0..PASSWORD_ATTEMPTS {
            assert_eq!(
                s.check_password("wrong", "10.0.0.2").unwrap_err().code,
                "access_denied"
            );
        }
        assert_eq!(
            s.check_password("correct horse battery", "10.0.0.2")
                .unwrap_err()
                .code,
            "too_many_requests"
        );
        assert!(
            s.check_password("correct horse battery", "10.0.0.3")
                .is_ok(),
            "other addresses unaffected"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn query_parameters_are_appended_encoded() {
        assert_eq!(
            with_query(
                "https://a/cb?x=1",
                &[("code", Some("a b")), ("state", None)]
            ),
            "https://a/cb?x=1&code=a%20b"
        );
    }
}
