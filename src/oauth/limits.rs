//! The authorization server's abuse limits: event counters per key in a sliding window (with a
//! bounded number of keys, so that distinct inputs cannot grow memory), the owner-password
//! guard (a limit per address plus a global back-off that slows a spread-out attack without
//! locking the owner out for good), and the key an address counts under.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys a limiter remembers; past it, keys without recent events go first, then the
/// least recently used.
pub const MAX_KEYS: usize = 4096;
/// Wrong passwords allowed per address within [`PASSWORD_WINDOW`].
pub const PASSWORD_ATTEMPTS: usize = 5;
/// The window of the password limits.
pub const PASSWORD_WINDOW: Duration = Duration::from_secs(300);
/// Wrong passwords from all addresses together within [`PASSWORD_WINDOW`] before the global
/// back-off starts.
pub const GLOBAL_FREE_ATTEMPTS: usize = 20;
/// The longest pause the global back-off imposes between two password checks.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The key an address counts under: an IPv4 address itself, an IPv6 address by its /64 (one
/// host can use a whole /64), an IPv4-mapped IPv6 address as IPv4.
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// One of at most `max` things done at once (a metadata fetch, a worker in the OAuth face),
/// counted in `counter` while the slot lives.
pub struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    /// A slot, unless `max` are taken already.
    pub fn take(counter: &'a AtomicUsize, max: usize) -> Option<Slot<'a>> {
        if counter.fetch_add(1, Ordering::SeqCst) >= max {
            counter.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot(counter))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts events per key within a sliding window.
#[derive(Default)]
pub struct RateLimiter {
    events: Mutex<HashMap<String, Vec<Instant>>>,
}

impl RateLimiter {
    /// Records an event for `key` if it had fewer than `max` within `window`, in one step (so
    /// concurrent requests cannot all pass a check made before any of them is counted).
    pub fn allow(&self, key: &str, max: usize, window: Duration) -> bool {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if !events.contains_key(key) && events.len() >= MAX_KEYS {
            make_room(&mut events, window);
        }
        let list = events.entry(key.to_string()).or_default();
        list.retain(|t| t.elapsed() < window);
        if list.len() >= max {
            return false;
        }
        list.push(Instant::now());
        true
    }

    /// Keys remembered now (for tests and `/status`).
    pub fn keys(&self) -> usize {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Drops keys whose newest event is older than `window`, then, if still full, the key whose
/// newest event is the oldest.
fn make_room(events: &mut HashMap<String, Vec<Instant>>, window: Duration) {
    events.retain(|_, list| list.last().is_some_and(|t| t.elapsed() < window));
    while events.len() >= MAX_KEYS {
        let oldest = events
            .iter()
            .min_by_key(|(_, list)| list.last().copied())
            .map(|(k, _)| k.clone());
        match oldest {
            Some(key) => events.remove(&key),
            None => break,
        };
    }
}

/// Why a password check was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordRefusal {
    /// This address had its [`PASSWORD_ATTEMPTS`] wrong passwords in the window.
    Address,
    /// Too many wrong passwords from everywhere: the next check is possible after this long.
    Backoff(Duration),
}

#[derive(Default)]
struct GuardState {
    per_address: HashMap<String, Vec<Instant>>,
    failures: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

/// The owner password's guard. A check, its verification and its recording happen under one
/// lock, so concurrent guesses get no more tries than sequential ones.
#[derive(Default)]
pub struct PasswordGuard {
    state: Mutex<GuardState>,
}

impl PasswordGuard {
    /// Runs `verify` (the password comparison) unless `address` or the global back-off forbids
    /// a check now; counts a failure. Returns whether the password was right.
    pub fn check(
        &self,
        address: &str,
        verify: impl FnOnce() -> bool,
    ) -> Result<bool, PasswordRefusal> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(until) = state.blocked_until {
            if until > now {
                return Err(PasswordRefusal::Backoff(until - now));
            }
        }
        if !state.per_address.contains_key(address) && state.per_address.len() >= MAX_KEYS {
            make_room(&mut state.per_address, PASSWORD_WINDOW);
        }
        let mine = state.per_address.entry(address.to_string()).or_default();
        mine.retain(|t| t.elapsed() < PASSWORD_WINDOW);
        if mine.len() >= PASSWORD_ATTEMPTS {
            return Err(PasswordRefusal::Address);
        }
        if verify() {
            return Ok(true);
        }
        let now = Instant::now();
        mine.push(now);
        state.failures.push_back(now);
        while state
            .failures
            .front()
            .is_some_and(|t| t.elapsed() >= PASSWORD_WINDOW)
        {
            state.failures.pop_front();
        }
        let excess = state.failures.len().saturating_sub(GLOBAL_FREE_ATTEMPTS);
        if excess > 0 {
            let pause = Duration::from_secs(1 << (excess - 1).min(6)).min(MAX_BACKOFF);
            state.blocked_until = Some(now + pause);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_count_by_host_or_slash_64() {
        let key = |s: &str| address_key(s.parse().expect("ip"));
        assert_eq!(key("203.0.113.5"), "203.0.113.5");
        assert_eq!(key("::ffff:203.0.113.5"), "203.0.113.5");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn slots_are_bounded_and_come_back() {
        let counter = AtomicUsize::new(0);
        let first = Slot::take(&counter, 2).expect("one");
        let second = Slot::take(&counter, 2).expect("two");
        assert!(Slot::take(&counter, 2).is_none());
        drop(first);
        assert!(Slot::take(&counter, 2).is_some());
        drop(second);
        assert_eq!(counter.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_limiter_counts_in_one_step_and_keeps_a_bounded_number_of_keys() {
        let limiter = RateLimiter::default();
        let window = Duration::from_secs(60);
        assert!((0..3).all(|_| limiter.allow("a", 3, window)));
        assert!(!limiter.allow("a", 3, window));
        for i in 0..(MAX_KEYS * 2) {
            limiter.allow(&format!("distinct-{i}"), 3, window);
        }
        assert!(limiter.keys() <= MAX_KEYS, "{}", limiter.keys());
    }

    #[test]
    fn concurrent_wrong_passwords_get_exactly_the_allowed_tries() {
        let guard = std::sync::Arc::new(PasswordGuard::default());
        let tried = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..64)
            .map(|_| {
                let (guard, tried) = (guard.clone(), tried.clone());
                std::thread::spawn(move || {
                    guard.check("198.51.100.1", || {
                        tried.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(2));
                        false
                    })
                })
            })
            .collect();
        let outcomes: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        assert_eq!(
            tried.load(std::sync::atomic::Ordering::SeqCst),
            PASSWORD_ATTEMPTS
        );
        let refused = outcomes
            .iter()
            .filter(|o| **o == Err(PasswordRefusal::Address))
            .count();
        assert_eq!(refused, 64 - PASSWORD_ATTEMPTS);
    }

    #[test]
    fn a_spread_out_attack_meets_a_growing_pause_that_never_locks_for_good() {
        let guard = PasswordGuard::default();
        for i in 0..GLOBAL_FREE_ATTEMPTS {
            assert_eq!(guard.check(&format!("10.0.0.{i}"), || false), Ok(false));
        }
        // One more failure from a fresh address starts the back-off.
        assert_eq!(guard.check("10.0.1.1", || false), Ok(false));
        match guard.check("10.0.1.2", || true) {
            Err(PasswordRefusal::Backoff(wait)) => assert!(wait <= MAX_BACKOFF),
            other => panic!("{other:?}"),
        }
        // The pause is bounded: the owner's right password works once it has passed.
        std::thread::sleep(Duration::from_millis(1050));
        assert_eq!(guard.check("10.0.1.2", || true), Ok(true));
    }
}
