//! Bearer tokens: creation, the hashed token file, and checking a presented token.
//!
//! A token is shown once when created; the state folder keeps only its SHA-256 in `tokens.json`
//! (written by the CLI and by first start) and the last-use times in `token-usage.json` (written
//! by the running server). The server notices a changed `tokens.json` on the next request, so
//! `token create` and `token revoke` take effect without a restart.

use crate::policy::AccessRule;
use crate::store;
use crate::tool_view::ToolView;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const TOKENS_FILE: &str = "tokens.json";
const USAGE_FILE: &str = "token-usage.json";
const TOKEN_PREFIX: &str = "mgw_";

/// One stored token: its name and hash, never the token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenRecord {
    /// The name given at creation.
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// What it may reach (absent: everything).
    #[serde(default, skip_serializing_if = "AccessRule::is_everything")]
    pub access: AccessRule,
    /// A profile of the config whose rule it has instead (read at each request, so editing the
    /// profile changes every token that names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// What its `tools/list` shows (absent: `full`, every tool).
    #[serde(default, skip_serializing_if = "ToolView::is_full")]
    pub tool_view: ToolView,
}

impl TokenRecord {
    /// `token list`'s ACCESS column: `profile=NAME`, or the rule; then ` tool-view=search` for a
    /// token with the search view.
    pub fn describe_access(&self) -> String {
        let access = match &self.profile {
            Some(profile) => format!("profile={profile}"),
            None => self.access.describe(),
        };
        if self.tool_view.is_full() {
            access
        } else {
            format!("{access} tool-view=search")
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    version: u32,
    tokens: Vec<TokenRecord>,
}

/// What can go wrong with the token file.
#[derive(Debug)]
pub enum TokenError {
    /// The file exists but cannot be read or written.
    Io(PathBuf, std::io::Error),
    /// The file is damaged.
    Corrupt(PathBuf, String),
    /// `token create` with a name already in use.
    NameTaken(String),
    /// `token revoke` with an unknown name.
    NotFound(String),
    /// A token name outside `[A-Za-z0-9._-]{1,64}`.
    BadName(String),
    /// The system random source failed.
    Random(String),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Io(p, e) => write!(f, "cannot access {}: {e} (hint: check the state_dir setting and the folder's permissions)", p.display()),
            TokenError::Corrupt(p, e) => write!(f, "{} is damaged: {e} (hint: restore it from a backup, or move it away and create new tokens)", p.display()),
            TokenError::NameTaken(n) => write!(f, "a token named \"{n}\" already exists (hint: revoke it first or pick another name)"),
            TokenError::NotFound(n) => write!(f, "no token named \"{n}\" (hint: `mcp-gateway token list` shows the names)"),
            TokenError::BadName(n) => write!(f, "\"{n}\" is not a valid token name (hint: use letters, digits, '.', '_' or '-', at most 64)"),
            TokenError::Random(e) => write!(f, "the system random source failed: {e}"),
        }
    }
}

impl std::error::Error for TokenError {}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    text
}

/// Hex SHA-256 of a token.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Compares two byte strings in time that depends only on their length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new random token: `mgw_` and 64 hex digits (256 bits).
pub fn generate_token() -> Result<String, TokenError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(format!("{TOKEN_PREFIX}{}", hex(&bytes)))
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn read_file(path: &Path) -> Result<TokenFile, TokenError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| TokenError::Corrupt(path.to_path_buf(), e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile {
            version: 1,
            tokens: Vec::new(),
        }),
        Err(e) => Err(TokenError::Io(path.to_path_buf(), e)),
    }
}

fn write_file(path: &Path, file: &TokenFile) -> Result<(), TokenError> {
    let bytes = serde_json::to_vec_pretty(file)
        .map_err(|e| TokenError::Corrupt(path.to_path_buf(), e.to_string()))?;
    store::write_atomic(path, &bytes).map_err(|e| TokenError::Io(path.to_path_buf(), e))
}

/// The state folder's lock (see [`store::lock_dir`]), for a read-modify-write of the token file.
fn lock(state_dir: &Path) -> Result<store::DirLock, TokenError> {
    store::lock_dir(state_dir).map_err(|e| TokenError::Io(state_dir.to_path_buf(), e))
}

/// Creates a token named `name` in `state_dir` that may reach everything, and returns it (the
/// only time it exists in clear).
pub fn create(state_dir: &Path, name: &str) -> Result<String, TokenError> {
    create_with_access(state_dir, name, AccessRule::everything(), None)
}

/// Creates a token named `name` limited by `access`, or by the config's profile `profile`, and
/// returns it (the only time it exists in clear).
pub fn create_with_access(
    state_dir: &Path,
    name: &str,
    access: AccessRule,
    profile: Option<String>,
) -> Result<String, TokenError> {
    create_with_view(state_dir, name, access, profile, ToolView::Full)
}

/// Like [`create_with_access`], with the token's tool view.
pub fn create_with_view(
    state_dir: &Path,
    name: &str,
    access: AccessRule,
    profile: Option<String>,
    tool_view: ToolView,
) -> Result<String, TokenError> {
    if !valid_name(name) {
        return Err(TokenError::BadName(name.to_string()));
    }
    let _lock = lock(state_dir)?;
    let path = state_dir.join(TOKENS_FILE);
    let mut file = read_file(&path)?;
    if file.tokens.iter().any(|t| t.name == name) {
        return Err(TokenError::NameTaken(name.to_string()));
    }
    let token = generate_token()?;
    file.version = 1;
    file.tokens.push(TokenRecord {
        name: name.to_string(),
        sha256: hash_token(&token),
        created: now_secs(),
        access,
        profile,
        tool_view,
    });
    write_file(&path, &file)?;
    Ok(token)
}

/// Replaces the access of the token named `name` (a running server sees it at its next
/// request).
pub fn set_access(
    state_dir: &Path,
    name: &str,
    access: AccessRule,
    profile: Option<String>,
) -> Result<(), TokenError> {
    let _lock = lock(state_dir)?;
    let path = state_dir.join(TOKENS_FILE);
    let mut file = read_file(&path)?;
    let record = file
        .tokens
        .iter_mut()
        .find(|t| t.name == name)
        .ok_or_else(|| TokenError::NotFound(name.to_string()))?;
    record.access = access;
    record.profile = profile;
    write_file(&path, &file)
}

/// Removes the token named `name`.
pub fn revoke(state_dir: &Path, name: &str) -> Result<(), TokenError> {
    let _lock = lock(state_dir)?;
    let path = state_dir.join(TOKENS_FILE);
    let mut file = read_file(&path)?;
    let before = file.tokens.len();
    file.tokens.retain(|t| t.name != name);
    if file.tokens.len() == before {
        return Err(TokenError::NotFound(name.to_string()));
    }
    write_file(&path, &file)
}

/// The stored tokens with their last use (seconds since the epoch), for `token list`.
pub fn list(state_dir: &Path) -> Result<Vec<(TokenRecord, Option<u64>)>, TokenError> {
    let file = read_file(&state_dir.join(TOKENS_FILE))?;
    let usage: BTreeMap<String, u64> = std::fs::read(state_dir.join(USAGE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    Ok(file
        .tokens
        .into_iter()
        .map(|t| {
            let used = usage.get(&t.name).copied();
            (t, used)
        })
        .collect())
}

#[derive(Default)]
struct Cached {
    stamp: Option<(SystemTime, u64)>,
    tokens: Vec<TokenRecord>,
}

/// The running server's view of the tokens: re-read when the file changes, last use kept in
/// memory and flushed now and then.
pub struct TokenStore {
    dir: PathBuf,
    cached: Mutex<Cached>,
    usage: Mutex<(BTreeMap<String, u64>, bool)>,
}

impl TokenStore {
    /// Opens the store in `state_dir` (which must exist).
    pub fn open(state_dir: &Path) -> Result<TokenStore, TokenError> {
        let usage: BTreeMap<String, u64> = std::fs::read(state_dir.join(USAGE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let store = TokenStore {
            dir: state_dir.to_path_buf(),
            cached: Mutex::new(Cached::default()),
            usage: Mutex::new((usage, false)),
        };
        store.refresh()?;
        Ok(store)
    }

    /// Number of tokens.
    pub fn count(&self) -> usize {
        let _ = self.refresh();
        self.cached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tokens
            .len()
    }

    fn refresh(&self) -> Result<(), TokenError> {
        let path = self.dir.join(TOKENS_FILE);
        let stamp = std::fs::metadata(&path)
            .ok()
            .map(|m| (m.modified().unwrap_or(UNIX_EPOCH), m.len()));
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if stamp.is_some() && cached.stamp == stamp {
            return Ok(());
        }
        match read_file(&path) {
            Ok(file) => {
                cached.tokens = file.tokens;
                cached.stamp = stamp;
                Ok(())
            }
            Err(e) => {
                // Keep serving with what we had rather than locking everyone out; say why.
                log::error!("{e}");
                Err(e)
            }
        }
    }

    /// The name of the token `presented`, if it is a valid one.
    pub fn verify(&self, presented: &str) -> Option<String> {
        self.verify_record(presented).map(|r| r.name)
    }

    /// The stored record of the token `presented` (its name and access), if it is a valid one.
    /// Every stored hash is compared, in constant time, so timing tells nothing about which one
    /// matched.
    pub fn verify_record(&self, presented: &str) -> Option<TokenRecord> {
        let _ = self.refresh();
        let hash = hash_token(presented);
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        for record in &cached.tokens {
            if constant_time_eq(hash.as_bytes(), record.sha256.as_bytes()) {
                found = Some(record.clone());
            }
        }
        drop(cached);
        if let Some(record) = &found {
            let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
            usage.0.insert(record.name.clone(), now_secs());
            usage.1 = true;
        }
        found
    }

    /// Last use of each token by name (seconds since the epoch), as this process knows it
    /// (newer than `token-usage.json` between flushes).
    pub fn last_used(&self) -> BTreeMap<String, u64> {
        self.usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Writes last-use times if they changed since the last flush.
    pub fn flush_usage(&self) {
        let snapshot = {
            let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
            if !usage.1 {
                return;
            }
            usage.1 = false;
            usage.0.clone()
        };
        match serde_json::to_vec_pretty(&snapshot) {
            Ok(bytes) => {
                if let Err(e) = store::write_atomic(&self.dir.join(USAGE_FILE), &bytes) {
                    log::warn!(
                        "cannot record token use times in {}: {e}",
                        self.dir.display()
                    );
                }
            }
            Err(e) => log::warn!("cannot encode token use times: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mcpgw-tokens-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn create_verify_revoke_without_storing_the_token() {
        let dir = temp_dir("cvr");
        let token = create(&dir, "laptop").expect("create");
        assert!(token.starts_with("mgw_") && token.len() == 68);
        let on_disk = std::fs::read_to_string(dir.join(TOKENS_FILE)).expect("file");
        assert!(
            !on_disk.contains(&token[4..]),
            "the token itself must never be stored"
        );
        let store = TokenStore::open(&dir).expect("open");
        assert_eq!(store.verify(&token).as_deref(), Some("laptop"));
        assert_eq!(store.verify("mgw_wrong"), None);
        assert!(matches!(
            create(&dir, "laptop"),
            Err(TokenError::NameTaken(_))
        ));
        // Revocation from another process is seen without a restart (mtime or size changes).
        revoke(&dir, "laptop").expect("revoke");
        assert_eq!(store.verify(&token), None);
        assert!(matches!(
            revoke(&dir, "laptop"),
            Err(TokenError::NotFound(_))
        ));
        assert!(matches!(
            create(&dir, "bad name"),
            Err(TokenError::BadName(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn usage_is_flushed_and_listed() {
        let dir = temp_dir("usage");
        let token = create(&dir, "a").expect("create");
        create(&dir, "b").expect("create");
        let store = TokenStore::open(&dir).expect("open");
        store.verify(&token);
        store.flush_usage();
        let listed = list(&dir).expect("list");
        assert_eq!(listed.len(), 2);
        assert!(listed[0].1.is_some());
        assert!(listed[1].1.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn access_is_stored_listed_and_verified() {
        let dir = temp_dir("access");
        let everything = create(&dir, "owner").expect("create");
        let rule = AccessRule {
            servers: Some(vec!["house".into()]),
            allow: Vec::new(),
            deny: vec!["*unlock*".into()],
            read_only: true,
        };
        let kids = create_with_access(&dir, "kids", rule.clone(), None).expect("create");
        create_with_access(
            &dir,
            "tablet",
            AccessRule::everything(),
            Some("kids".into()),
        )
        .expect("create");
        let on_disk = std::fs::read_to_string(dir.join(TOKENS_FILE)).expect("file");
        // An unrestricted token's record stays as it was before access rules existed.
        assert_eq!(on_disk.matches("\"access\"").count(), 1, "{on_disk}");
        let store = TokenStore::open(&dir).expect("open");
        assert_eq!(store.verify_record(&kids).map(|r| r.access), Some(rule));
        assert!(store
            .verify_record(&everything)
            .unwrap()
            .access
            .is_everything());
        let listed: Vec<String> = list(&dir)
            .expect("list")
            .into_iter()
            .map(|(r, _)| r.describe_access())
            .collect();
        assert_eq!(
            listed,
            [
                "everything",
                "servers=house deny=*unlock* read-only",
                "profile=kids"
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_tool_view_is_stored_only_when_not_full() {
        let dir = temp_dir("view");
        let full = create(&dir, "desk").expect("create");
        let small = create_with_view(
            &dir,
            "phone",
            AccessRule::everything(),
            None,
            ToolView::Search,
        )
        .expect("create");
        let on_disk = std::fs::read_to_string(dir.join(TOKENS_FILE)).expect("file");
        // Records without a view read as before (older files load unchanged).
        assert_eq!(on_disk.matches("\"tool_view\"").count(), 1, "{on_disk}");
        assert!(on_disk.contains("\"tool_view\": \"search\""), "{on_disk}");
        let store = TokenStore::open(&dir).expect("open");
        assert_eq!(
            store.verify_record(&full).map(|r| r.tool_view),
            Some(ToolView::Full)
        );
        assert_eq!(
            store.verify_record(&small).map(|r| r.tool_view),
            Some(ToolView::Search)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn creations_at_once_keep_every_token() {
        // Each one reads the file, adds its token and writes it back: without the state
        // folder's lock, most of them wrote over the others'.
        let dir = temp_dir("at-once");
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let dir = dir.clone();
                std::thread::spawn(move || create(&dir, &format!("t{i}")).expect("create"))
            })
            .collect();
        let tokens: Vec<String> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        let store = TokenStore::open(&dir).expect("open");
        assert!(tokens.iter().all(|t| store.verify(t).is_some()));
        assert_eq!(list(&dir).expect("list").len(), 16);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn constant_time_eq_basics() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
