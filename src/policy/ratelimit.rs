//! Rate limits on authenticated requests: a token bucket per principal and one for the whole
//! gateway, on top of each backend's cap on calls in flight. A runaway client (a model stuck in a
//! loop, a script gone wrong) is slowed to its share; the others go on.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most principals with a bucket remembered; full buckets are forgotten first.
const MAX_BUCKETS: usize = 4096;

/// A rate: so many requests a minute, with bursts up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests a minute on average.
    pub per_minute: u64,
    /// Requests allowed at once after a quiet while.
    pub burst: u64,
}

impl Rate {
    /// `per_minute` with a burst of `burst`, or ten seconds' worth when `burst` is `None`.
    pub fn new(per_minute: u64, burst: Option<u64>) -> Rate {
        Rate {
            per_minute,
            burst: burst.unwrap_or(per_minute / 6).max(1),
        }
    }

    fn per_second(&self) -> f64 {
        self.per_minute as f64 / 60.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst as f64,
            at: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second()).min(rate.burst as f64);
        self.at = now;
    }

    /// How long until one token is there (zero if one is).
    fn wait(&self, rate: Rate) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / rate.per_second())
        }
    }
}

/// Which limit refused a request, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limited {
    /// The principal's own limit (`false`: the gateway's global one).
    pub own: bool,
    /// How long until a request would pass.
    pub retry_after: Duration,
}

/// The limits of a running gateway.
pub struct RateLimits {
    per_principal: Option<Rate>,
    global: Option<Rate>,
    state: Mutex<(HashMap<String, Bucket>, Option<Bucket>)>,
}

impl RateLimits {
    /// Limits per principal and for the whole gateway (`None`: no such limit).
    pub fn new(per_principal: Option<Rate>, global: Option<Rate>) -> RateLimits {
        RateLimits {
            per_principal,
            global,
            state: Mutex::new((HashMap::new(), None)),
        }
    }

    /// Takes a token for one request of `principal`, or says which limit refused it. Nothing
    /// is taken from either bucket when one of them refuses.
    pub fn check(&self, principal: &str) -> Result<(), Limited> {
        if self.per_principal.is_none() && self.global.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (buckets, global_bucket) = &mut *state;
        if let Some(rate) = self.global {
            let bucket = global_bucket.get_or_insert_with(|| Bucket::full(rate, now));
            bucket.refill(rate, now);
            if bucket.tokens < 1.0 {
                return Err(Limited {
                    own: false,
                    retry_after: bucket.wait(rate),
                });
            }
        }
        if let Some(rate) = self.per_principal {
            if !buckets.contains_key(principal) && buckets.len() >= MAX_BUCKETS {
                buckets.retain(|_, b| {
                    let mut b = *b;
                    b.refill(rate, now);
                    b.tokens < rate.burst as f64
                });
                if buckets.len() >= MAX_BUCKETS {
                    return Err(Limited {
                        own: false,
                        retry_after: Duration::from_secs(1),
                    });
                }
            }
            let bucket = buckets
                .entry(principal.to_string())
                .or_insert_with(|| Bucket::full(rate, now));
            bucket.refill(rate, now);
            if bucket.tokens < 1.0 {
                return Err(Limited {
                    own: true,
                    retry_after: bucket.wait(rate),
                });
            }
            bucket.tokens -= 1.0;
        }
        if let (Some(_), Some(bucket)) = (self.global, global_bucket.as_mut()) {
            bucket.tokens -= 1.0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds_and_others_are_not_affected() {
        let limits = RateLimits::new(Some(Rate::new(60, Some(3))), None);
        for _ in 0..3 {
            assert_eq!(limits.check("kids-tablet"), Ok(()));
        }
        let refused = limits.check("kids-tablet").unwrap_err();
        assert!(refused.own);
        assert!(refused.retry_after > Duration::from_millis(900));
        assert!(refused.retry_after <= Duration::from_secs(1));
        assert_eq!(
            limits.check("open-webui"),
            Ok(()),
            "another principal has its own bucket"
        );
    }

    #[test]
    fn the_global_limit_counts_everyone_and_refusals_cost_nothing() {
        let limits = RateLimits::new(Some(Rate::new(600, Some(2))), Some(Rate::new(60, Some(3))));
        assert_eq!(limits.check("a"), Ok(()));
        assert_eq!(limits.check("a"), Ok(()));
        assert!(
            limits.check("a").unwrap_err().own,
            "a's own bucket is empty"
        );
        assert_eq!(
            limits.check("b"),
            Ok(()),
            "a's refusal took nothing from the global bucket"
        );
        let refused = limits.check("c").unwrap_err();
        assert!(!refused.own, "the global bucket is empty");
    }

    #[test]
    fn without_limits_everything_passes() {
        let limits = RateLimits::new(None, None);
        assert!((0..10_000).all(|_| limits.check("x").is_ok()));
    }

    #[test]
    fn the_default_burst_is_ten_seconds_worth() {
        assert_eq!(Rate::new(120, None).burst, 20);
        assert_eq!(Rate::new(3, None).burst, 1);
    }
}
