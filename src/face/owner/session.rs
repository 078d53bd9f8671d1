//! The owner's sign-in sessions: a random cookie value (256 bits from the system's random
//! source) that the gateway keeps only as its SHA-256, with the session's CSRF token, its
//! times and a one-time message for the next page (a new token, shown once).
//!
//! Sessions live in memory only (a restart signs the owner out), at most [`MAX_SESSIONS`]
//! (the least recently used one goes first), and end after an idle time or an absolute
//! lifetime (`owner.session_idle_secs`, `owner.session_max_secs`), at sign-out, or when the
//! flash with a new token has been shown and the session ends. Every comparison of a presented
//! secret with a kept one takes time independent of where they differ.

use crate::tokens::{constant_time_eq, hash_token, hex};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sessions kept at most.
pub const MAX_SESSIONS: usize = 32;

/// Why a session could not be opened.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionError {
    /// The system random source failed.
    Random(String),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Random(e) => write!(f, "the system random source failed: {e}"),
        }
    }
}

impl std::error::Error for SessionError {}

/// A message for the next page the session sees, shown once.
#[derive(Debug, Clone, PartialEq)]
pub enum Flash {
    /// A token just created: its name and the token itself (the only time it is shown).
    NewToken {
        /// Its name.
        name: String,
        /// The token.
        token: String,
    },
    /// Something done.
    Done(String),
    /// Something that could not be done.
    Problem(String),
}

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lifetimes {
    /// Since the last request.
    pub idle: Duration,
    /// Since sign-in.
    pub max: Duration,
}

struct Session {
    /// Hex SHA-256 of the cookie value.
    hash: String,
    csrf: String,
    created: Instant,
    last: Instant,
    flash: Option<Flash>,
}

impl Session {
    fn alive(&self, now: Instant, life: Lifetimes) -> bool {
        now.saturating_duration_since(self.last) < life.idle
            && now.saturating_duration_since(self.created) < life.max
    }
}

/// A session just opened: the cookie value to send (never kept) and its CSRF token.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// The cookie's value.
    pub cookie: String,
    /// The CSRF token its forms carry.
    pub csrf: String,
}

/// What a request with a live session gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    /// The CSRF token of its forms.
    pub csrf: String,
    /// The one-time message, taken (when asked for).
    pub flash: Option<Flash>,
}

/// The sessions.
#[derive(Default)]
pub struct Sessions {
    all: Mutex<Vec<Session>>,
}

fn random_hex() -> Result<String, SessionError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| SessionError::Random(e.to_string()))?;
    Ok(hex(&bytes))
}

impl Sessions {
    /// No sessions.
    pub fn new() -> Sessions {
        Sessions::default()
    }

    /// Opens a session at `now`.
    pub fn open(&self, now: Instant, life: Lifetimes) -> Result<Opened, SessionError> {
        let cookie = random_hex()?;
        let csrf = random_hex()?;
        let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|s| s.alive(now, life));
        while all.len() >= MAX_SESSIONS {
            let oldest = all
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.last)
                .map(|(i, _)| i);
            match oldest {
                Some(i) => all.remove(i),
                None => break,
            };
        }
        all.push(Session {
            hash: hash_token(&cookie),
            csrf: csrf.clone(),
            created: now,
            last: now,
            flash: None,
        });
        Ok(Opened { cookie, csrf })
    }

    /// Runs `f` on the live session of `cookie` (touched at `now`); expired ones are dropped
    /// first. Every kept hash is compared, in constant time.
    fn with<T>(
        &self,
        cookie: &str,
        now: Instant,
        life: Lifetimes,
        f: impl FnOnce(&mut Session) -> T,
    ) -> Option<T> {
        if cookie.is_empty() {
            return None;
        }
        let hash = hash_token(cookie);
        let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|s| s.alive(now, life));
        let mut found = None;
        for (i, session) in all.iter().enumerate() {
            if constant_time_eq(session.hash.as_bytes(), hash.as_bytes()) {
                found = Some(i);
            }
        }
        let session = &mut all[found?];
        session.last = now;
        Some(f(session))
    }

    /// The live session of `cookie`, its flash taken when `take_flash`.
    pub fn current(
        &self,
        cookie: &str,
        now: Instant,
        life: Lifetimes,
        take_flash: bool,
    ) -> Option<Current> {
        self.with(cookie, now, life, |s| Current {
            csrf: s.csrf.clone(),
            flash: if take_flash { s.flash.take() } else { None },
        })
    }

    /// Whether `cookie` has a live session whose CSRF token is `presented`.
    pub fn check_csrf(&self, cookie: &str, presented: &str, now: Instant, life: Lifetimes) -> bool {
        self.with(cookie, now, life, |s| {
            constant_time_eq(s.csrf.as_bytes(), presented.as_bytes())
        })
        .unwrap_or(false)
    }

    /// Leaves `flash` for the next page of `cookie`'s session.
    pub fn set_flash(&self, cookie: &str, flash: Flash, now: Instant, life: Lifetimes) {
        self.with(cookie, now, life, |s| s.flash = Some(flash));
    }

    /// Ends `cookie`'s session (sign-out).
    pub fn close(&self, cookie: &str) {
        let hash = hash_token(cookie);
        let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|s| !constant_time_eq(s.hash.as_bytes(), hash.as_bytes()));
    }

    /// Sessions kept now (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.all.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFE: Lifetimes = Lifetimes {
        idle: Duration::from_secs(60),
        max: Duration::from_secs(600),
    };

    #[test]
    fn a_session_is_found_by_its_cookie_and_kept_only_as_a_hash() {
        let sessions = Sessions::new();
        let now = Instant::now();
        let opened = sessions.open(now, LIFE).expect("random");
        assert_eq!(opened.cookie.len(), 64);
        assert_ne!(opened.cookie, opened.csrf);
        let current = sessions.current(&opened.cookie, now, LIFE, true);
        assert_eq!(current.map(|c| c.csrf), Some(opened.csrf.clone()));
        assert!(sessions.current("", now, LIFE, true).is_none());
        assert!(sessions.current(&opened.csrf, now, LIFE, true).is_none());
        let all = sessions.all.lock().unwrap_or_else(|e| e.into_inner());
        assert!(all
            .iter()
            .all(|s| s.hash != opened.cookie && s.hash == hash_token(&opened.cookie)));
    }

    #[test]
    fn sessions_expire_when_idle_and_after_their_lifetime() {
        let sessions = Sessions::new();
        let start = Instant::now();
        let opened = sessions.open(start, LIFE).expect("random");
        let mut at = start;
        // Touched every 50 s: never idle for 60 s, yet gone 600 s after sign-in.
        while at < start + Duration::from_secs(590) {
            at += Duration::from_secs(50);
            let alive = sessions.current(&opened.cookie, at, LIFE, false).is_some();
            assert_eq!(alive, at < start + LIFE.max, "at {:?}", at - start);
        }
        let idle = sessions.open(start, LIFE).expect("random");
        assert!(sessions
            .current(&idle.cookie, start + Duration::from_secs(59), LIFE, false)
            .is_some());
        assert!(sessions
            .current(&idle.cookie, start + Duration::from_secs(119), LIFE, false)
            .is_none());
        assert!(
            sessions
                .current(&idle.cookie, start + Duration::from_secs(1), LIFE, false)
                .is_none(),
            "an expired session never comes back"
        );
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let sessions = Sessions::new();
        let now = Instant::now();
        let a = sessions.open(now, LIFE).expect("random");
        let b = sessions.open(now, LIFE).expect("random");
        assert!(sessions.check_csrf(&a.cookie, &a.csrf, now, LIFE));
        assert!(!sessions.check_csrf(&a.cookie, &b.csrf, now, LIFE));
        assert!(!sessions.check_csrf(&a.cookie, "", now, LIFE));
        assert!(!sessions.check_csrf(&a.cookie, &a.csrf[..63], now, LIFE));
        assert!(!sessions.check_csrf("forged", &a.csrf, now, LIFE));
        sessions.close(&a.cookie);
        assert!(!sessions.check_csrf(&a.cookie, &a.csrf, now, LIFE));
        assert!(sessions.check_csrf(&b.cookie, &b.csrf, now, LIFE));
    }

    #[test]
    fn a_flash_is_shown_once() {
        let sessions = Sessions::new();
        let now = Instant::now();
        let a = sessions.open(now, LIFE).expect("random");
        sessions.set_flash(&a.cookie, Flash::Done("x".into()), now, LIFE);
        let peek = sessions.current(&a.cookie, now, LIFE, false);
        assert_eq!(peek.and_then(|c| c.flash), None, "not taken unless asked");
        let first = sessions.current(&a.cookie, now, LIFE, true);
        assert_eq!(first.and_then(|c| c.flash), Some(Flash::Done("x".into())));
        let second = sessions.current(&a.cookie, now, LIFE, true);
        assert_eq!(second.and_then(|c| c.flash), None);
    }

    #[test]
    fn the_number_of_sessions_is_bounded() {
        let sessions = Sessions::new();
        let start = Instant::now();
        let first = sessions.open(start, LIFE).expect("random");
        for n in 1..=MAX_SESSIONS as u64 {
            sessions
                .open(start + Duration::from_millis(n), LIFE)
                .expect("random");
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(
            sessions
                .current(&first.cookie, start, LIFE, false)
                .is_none(),
            "the least recently used went"
        );
    }

    #[test]
    fn cookies_are_read_from_the_header() {
        assert_eq!(
            cookie_value("a=1; mgw_owner=abc ;b=2", "mgw_owner"),
            Some("abc")
        );
        assert_eq!(cookie_value("xmgw_owner=abc", "mgw_owner"), None);
        assert_eq!(cookie_value("", "mgw_owner"), None);
        assert_eq!(cookie_value("mgw_owner", "mgw_owner"), None);
    }
}
