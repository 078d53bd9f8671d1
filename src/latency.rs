//! A small, bounded per-backend latency history for the owner's page: for each of the last 60
//! minutes, a histogram of call durations, from which the page draws the median of the hour
//! and a sparkline of the per-minute medians.
//!
//! Fed by [`Metrics::observe`](crate::metrics::Metrics::observe), where every call's duration is
//! already measured. Recording is one lock, one short search and one counter increment; the
//! memory is fixed: [`MINUTES`] slots of [`BUCKETS`] counters per backend, at most
//! [`MAX_SERVERS`] backends (about 15 KiB each). Buckets grow by a factor of 2^(1/3) from
//! 0.25 ms, so a median is within about 12% of the true one; the page shows it as approximate.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Minutes of history kept.
pub const MINUTES: usize = 60;
/// Buckets of one minute's histogram.
pub const BUCKETS: usize = 64;
/// Backends tracked at most (others are not recorded).
pub const MAX_SERVERS: usize = 64;
/// Lower bound of the first bucket, in milliseconds.
const FLOOR_MS: f64 = 0.25;
/// Buckets per doubling.
const PER_DOUBLING: f64 = 3.0;

#[derive(Clone)]
struct Slot {
    /// The minute (since the history was made) these counts belong to.
    minute: u64,
    counts: [u32; BUCKETS],
}

struct Series {
    server: String,
    slots: Vec<Slot>,
}

/// What the page shows for one backend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Median over the whole window, in milliseconds (`None`: no call).
    pub median_ms: Option<f64>,
    /// Calls in the window.
    pub calls: u64,
    /// Median of each minute, oldest first (`None`: no call that minute).
    pub per_minute: Vec<Option<f64>>,
}

/// The history of every backend.
pub struct History {
    start: Instant,
    series: Mutex<Vec<Series>>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("History")
    }
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

/// The bucket a duration falls in.
pub fn bucket_of(ms: f64) -> usize {
    if ms.is_nan() || ms <= FLOOR_MS {
        return 0;
    }
    let index = ((ms / FLOOR_MS).log2() * PER_DOUBLING).floor();
    if index >= (BUCKETS - 1) as f64 {
        BUCKETS - 1
    } else {
        index as usize
    }
}

/// The value a bucket stands for: the geometric middle of its bounds, in milliseconds.
pub fn bucket_value(index: usize) -> f64 {
    FLOOR_MS * 2f64.powf((index as f64 + 0.5) / PER_DOUBLING)
}

/// The median of a histogram (`None` when empty).
fn median(counts: &[u32; BUCKETS]) -> Option<f64> {
    let total: u64 = counts.iter().map(|c| u64::from(*c)).sum();
    if total == 0 {
        return None;
    }
    let half = total.div_ceil(2);
    let mut seen = 0u64;
    for (i, c) in counts.iter().enumerate() {
        seen += u64::from(*c);
        if seen >= half {
            return Some(bucket_value(i));
        }
    }
    None
}

impl History {
    /// An empty history starting now.
    pub fn new() -> History {
        History {
            start: Instant::now(),
            series: Mutex::new(Vec::new()),
        }
    }

    fn minute_now(&self) -> u64 {
        self.start.elapsed().as_secs() / 60
    }

    /// Records one call to `server` that took `took`.
    pub fn record(&self, server: &str, took: Duration) {
        self.record_at(server, self.minute_now(), took.as_secs_f64() * 1000.0);
    }

    /// Records a call of `ms` milliseconds in minute `minute` (for tests: any clock).
    pub fn record_at(&self, server: &str, minute: u64, ms: f64) {
        let mut all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let index = match all.iter().position(|s| s.server == server) {
            Some(i) => i,
            None if all.len() < MAX_SERVERS => {
                all.push(Series {
                    server: server.to_string(),
                    slots: vec![
                        Slot {
                            minute: u64::MAX,
                            counts: [0; BUCKETS],
                        };
                        MINUTES
                    ],
                });
                all.len() - 1
            }
            None => return,
        };
        let slot = &mut all[index].slots[(minute % MINUTES as u64) as usize];
        if slot.minute != minute {
            slot.minute = minute;
            slot.counts = [0; BUCKETS];
        }
        let bucket = &mut slot.counts[bucket_of(ms)];
        *bucket = bucket.saturating_add(1);
    }

    /// The last hour of `server`.
    pub fn summary(&self, server: &str) -> Summary {
        self.summary_at(server, self.minute_now())
    }

    /// The hour ending with minute `now` (for tests: any clock).
    pub fn summary_at(&self, server: &str, now: u64) -> Summary {
        let all = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let mut hour = [0u32; BUCKETS];
        let mut per_minute = Vec::with_capacity(MINUTES);
        let series = all.iter().find(|s| s.server == server);
        for back in (0..MINUTES as u64).rev() {
            let Some(minute) = now.checked_sub(back) else {
                per_minute.push(None);
                continue;
            };
            let slot = series
                .map(|s| &s.slots[(minute % MINUTES as u64) as usize])
                .filter(|slot| slot.minute == minute);
            match slot {
                Some(slot) => {
                    for (sum, c) in hour.iter_mut().zip(slot.counts.iter()) {
                        *sum = sum.saturating_add(*c);
                    }
                    per_minute.push(median(&slot.counts));
                }
                None => per_minute.push(None),
            }
        }
        Summary {
            median_ms: median(&hour),
            calls: hour.iter().map(|c| u64::from(*c)).sum(),
            per_minute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_within_twelve_percent() {
        for ms in [0.3, 1.0, 7.5, 42.0, 999.0, 12_345.0] {
            let shown = bucket_value(bucket_of(ms));
            assert!(
                (shown / ms - 1.0).abs() < 0.13,
                "{ms} ms is shown as {shown}"
            );
        }
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(f64::NAN), 0);
        assert_eq!(
            bucket_of(1e12),
            BUCKETS - 1,
            "huge values stay in the last bucket"
        );
    }

    #[test]
    fn the_median_of_an_hour_and_of_each_minute() {
        let history = History::new();
        for ms in [10.0, 10.0, 10.0, 500.0] {
            history.record_at("a", 100, ms);
        }
        history.record_at("a", 130, 200.0);
        let s = history.summary_at("a", 130);
        assert_eq!(s.calls, 5);
        assert_eq!(s.per_minute.len(), MINUTES);
        let median = s.median_ms.unwrap_or_default();
        assert!((median / 10.0 - 1.0).abs() < 0.13, "{median}");
        let minute_100 = s.per_minute[MINUTES - 31].unwrap_or_default();
        assert!((minute_100 / 10.0 - 1.0).abs() < 0.13, "{minute_100}");
        let last = s.per_minute[MINUTES - 1].unwrap_or_default();
        assert!((last / 200.0 - 1.0).abs() < 0.13, "{last}");
        assert_eq!(s.per_minute.iter().filter(|m| m.is_some()).count(), 2);
        assert_eq!(
            history.summary_at("b", 130).calls,
            0,
            "other backends are apart"
        );
    }

    #[test]
    fn minutes_older_than_an_hour_are_forgotten_even_when_their_slot_is_reused() {
        let history = History::new();
        history.record_at("a", 5, 50.0);
        assert_eq!(
            history.summary_at("a", 64).calls,
            1,
            "minute 5 is within the hour"
        );
        assert_eq!(
            history.summary_at("a", 65).calls,
            0,
            "minute 5 is an hour old"
        );
        history.record_at("a", 65, 2.0);
        let s = history.summary_at("a", 65);
        assert_eq!(s.calls, 1, "the reused slot starts empty");
        assert!(s.median_ms.unwrap_or_default() < 3.0);
        assert!(history.summary_at("a", 0).per_minute[..MINUTES - 1]
            .iter()
            .all(Option::is_none));
    }

    #[test]
    fn the_number_of_backends_is_bounded() {
        let history = History::new();
        for n in 0..MAX_SERVERS + 10 {
            history.record_at(&format!("s{n}"), 1, 1.0);
        }
        assert_eq!(history.summary_at("s0", 1).calls, 1);
        assert_eq!(
            history
                .summary_at(&format!("s{}", MAX_SERVERS + 5), 1)
                .calls,
            0
        );
        let all = history.series.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(all.len(), MAX_SERVERS);
    }
}
