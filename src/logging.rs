//! The log: one line per event on stderr, `2026-12-01T19:12:26.123Z INFO  [module] message`,
//! at the level `MCP_GATEWAY_LOG` names (default `info`). ureq and rustls speak only from
//! `warn` up: their `info` lines are per request.
//!
//! A few lines of our own instead of a logging crate: the dependency and its time library cost
//! more than 20 KiB of a binary that must stay under 3 MiB.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Crates whose lines below `warn` are dropped.
const QUIET: &[&str] = &["ureq", "rustls"];

struct StderrLog {
    level: LevelFilter,
}

impl Log for StderrLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let target = metadata.target();
        let quiet = QUIET
            .iter()
            .any(|q| target == *q || target.starts_with(&format!("{q}::")));
        let limit = if quiet {
            self.level.min(LevelFilter::Warn)
        } else {
            self.level
        };
        metadata.level() <= limit
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let line = format!(
            "{} {:<5} [{}] {}\n",
            timestamp(now.as_secs(), now.subsec_millis()),
            level_name(record.level()),
            record.target(),
            record.args()
        );
        // One write per line, so lines of two threads never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARN",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for `secs` since the Unix epoch and `millis`.
pub fn timestamp(secs: u64, millis: u32) -> String {
    let (year, month, day) = civil_date(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The calendar date of day `days` since 1970-01-01 (Howard Hinnant's civil-from-days).
pub fn civil_date(days: u64) -> (i64, i64, i64) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Installs the log at the level `MCP_GATEWAY_LOG` names (`error`, `warn`, `info`, `debug`,
/// `trace`; default `info`). A second call changes nothing.
pub fn init() {
    let level = std::env::var("MCP_GATEWAY_LOG")
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::Info);
    static LOG: OnceLock<StderrLog> = OnceLock::new();
    if log::set_logger(LOG.get_or_init(|| StderrLog { level })).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_iso_8601() {
        assert_eq!(timestamp(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_796_152_346, 123), "2026-12-01T19:12:26.123Z");
        // A leap day.
        assert_eq!(timestamp(951_782_400, 7), "2000-02-29T00:00:00.007Z");
    }

    #[test]
    fn chatty_crates_speak_from_warn_up() {
        let log = StderrLog {
            level: LevelFilter::Debug,
        };
        let at = |target: &str, level: Level| {
            log.enabled(&Metadata::builder().target(target).level(level).build())
        };
        assert!(at("mcp_gateway::server", Level::Debug));
        assert!(!at("ureq::run", Level::Info));
        assert!(at("ureq::run", Level::Warn));
        assert!(!at("rustls", Level::Debug));
        assert!(
            at("ureqx", Level::Debug),
            "only the crate itself is quieted"
        );
    }
}
