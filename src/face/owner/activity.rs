//! Recent activity for the owner's page: the newest lines of the audit log, read from the end
//! of the file at each page view.
//!
//! Reading the file (rather than keeping a copy in memory that the audit writer also feeds)
//! costs the call path nothing and shows exactly what the log holds, lines of other processes
//! and of earlier runs included. Only the last [`TAIL_BYTES`] of the current file are read (a
//! few hundred lines), so a page view costs one seek and one bounded read however large the
//! log grew; right after a rotation the page shows fewer lines until new ones are written.

use serde_json::Value;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes read from the end of the audit log.
pub const TAIL_BYTES: u64 = 64 * 1024;
/// Lines shown at most.
pub const MAX_ROWS: usize = 30;

/// One line of the log as the page shows it (every field is untrusted text).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// `YYYY-MM-DD HH:MM:SS` (UTC).
    pub time: String,
    /// The principal, or the address of an unauthenticated caller.
    pub principal: String,
    /// `tools/call`, `auth`, ...
    pub action: String,
    /// The backend.
    pub server: String,
    /// The tool, prompt or resource.
    pub name: String,
    /// `ok`, `error` or `refused`.
    pub outcome: String,
    /// Why, for errors and refusals.
    pub detail: String,
    /// Milliseconds, when the call was made.
    pub duration_ms: Option<f64>,
}

/// What to show: lines of one principal and/or one server (empty: any).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Exact principal.
    pub principal: String,
    /// Exact server.
    pub server: String,
}

impl Filter {
    fn keeps(&self, row: &Row) -> bool {
        (self.principal.is_empty() || row.principal == self.principal)
            && (self.server.is_empty() || row.server == self.server)
    }
}

/// Why the log could not be read.
#[derive(Debug)]
pub enum ActivityError {
    /// Opening, seeking or reading failed.
    Io(std::io::Error),
}

impl std::fmt::Display for ActivityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActivityError::Io(e) => write!(f, "cannot read the audit log: {e}"),
        }
    }
}

/// The last [`TAIL_BYTES`] of `path` (a missing file is empty).
pub fn tail(path: &Path) -> Result<Vec<u8>, ActivityError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ActivityError::Io(e)),
    };
    let len = file.metadata().map_err(ActivityError::Io)?.len();
    let from = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(from))
        .map_err(ActivityError::Io)?;
    let mut bytes = Vec::new();
    file.take(TAIL_BYTES)
        .read_to_end(&mut bytes)
        .map_err(ActivityError::Io)?;
    if from > 0 {
        // The first line is cut: start after it.
        let skip = bytes
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |i| i + 1);
        bytes.drain(..skip);
    }
    Ok(bytes)
}

fn text(line: &Value, key: &str) -> String {
    line.get(key)
        .and_then(Value::as_str)
        .map(|s| crate::untrusted::shortened(s, 160).to_string())
        .unwrap_or_default()
}

/// The rows of `bytes` (whole lines of the log) that `filter` keeps, newest first, at most
/// [`MAX_ROWS`]. Lines that are not JSON objects are skipped.
pub fn rows(bytes: &[u8], filter: &Filter) -> Vec<Row> {
    bytes
        .split(|b| *b == b'\n')
        .rev()
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter(Value::is_object)
        .map(|line| Row {
            time: text(&line, "time"),
            principal: text(&line, "principal"),
            action: text(&line, "action"),
            server: text(&line, "server"),
            name: text(&line, "name"),
            outcome: text(&line, "outcome"),
            detail: text(&line, "detail"),
            duration_ms: line.get("duration_ms").and_then(Value::as_f64),
        })
        .filter(|row| filter.keeps(row))
        .take(MAX_ROWS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_newest_first_filtered_and_bounded() {
        let mut log = String::new();
        for n in 0..100 {
            let who = if n % 2 == 0 { "laptop" } else { "oauth:claude" };
            log.push_str(&format!(
                "{{\"time\":\"t{n}\",\"principal\":\"{who}\",\"action\":\"tools/call\",\"server\":\"s{}\",\"name\":\"x\",\"outcome\":\"ok\",\"duration_ms\":1.5}}\n",
                n % 3
            ));
        }
        log.push_str("not json\n[1]\n");
        let all = rows(log.as_bytes(), &Filter::default());
        assert_eq!(all.len(), MAX_ROWS);
        assert_eq!(all[0].time, "t99");
        assert_eq!(all[0].duration_ms, Some(1.5));
        let laptop = rows(
            log.as_bytes(),
            &Filter {
                principal: "laptop".into(),
                server: "s0".into(),
            },
        );
        assert_eq!(laptop[0].time, "t96");
        assert!(laptop
            .iter()
            .all(|r| r.principal == "laptop" && r.server == "s0"));
    }

    #[test]
    fn the_tail_starts_at_a_whole_line_and_is_bounded() {
        let dir = std::env::temp_dir().join(format!("mcpgw-activity-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("audit.log");
        assert!(
            tail(&path).map(|t| t.is_empty()).unwrap_or(false),
            "no file: nothing"
        );
        let line = "{\"time\":\"t\",\"principal\":\"p\"}\n";
        let text = line.repeat(5000);
        std::fs::write(&path, &text).expect("write");
        let bytes = tail(&path).expect("read");
        assert!(bytes.len() as u64 <= TAIL_BYTES);
        assert!(bytes.starts_with(b"{\"time\""));
        assert_eq!(rows(&bytes, &Filter::default()).len(), MAX_ROWS);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
