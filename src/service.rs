//! Living as a service: the PID file in the state folder (so `mcp-gateway reload` finds the
//! running gateway), sending it `SIGHUP`, and the `/health` probe of `mcp-gateway healthcheck`
//! (for a `FROM scratch` image, which has no curl).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The PID file's name in the state folder.
pub const PID_FILE: &str = "mcp-gateway.pid";

/// What can go wrong signalling or probing the gateway.
#[derive(Debug)]
pub enum ServiceError {
    /// No PID file: the gateway is not running with this state folder.
    NotRunning(PathBuf),
    /// The PID file names a process that is gone.
    Stale(PathBuf, i32),
    /// The PID file cannot be read or holds no PID.
    BadPidFile(PathBuf, String),
    /// `kill` failed.
    Signal(i32, std::io::Error),
    /// `/health` did not answer 200.
    Unhealthy(String, String),
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::NotRunning(p) => write!(f, "no gateway is running with this state folder ({} does not exist; hint: is --config the one the service uses?)", p.display()),
            ServiceError::Stale(p, pid) => write!(f, "{} names process {pid}, which is not a running gateway (hint: start the gateway; the file is left from one that was killed)", p.display()),
            ServiceError::BadPidFile(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            ServiceError::Signal(pid, e) => write!(f, "cannot signal process {pid}: {e} (hint: run as the gateway's user or root)"),
            ServiceError::Unhealthy(url, why) => write!(f, "{url}: {why}"),
        }
    }
}

impl std::error::Error for ServiceError {}

/// Writes this process's PID into `state_dir` (atomically).
pub fn write_pid_file(state_dir: &Path) -> std::io::Result<()> {
    let pid = std::process::id();
    crate::store::write_atomic(&state_dir.join(PID_FILE), format!("{pid}\n").as_bytes())
}

/// Removes the PID file if it still names this process.
pub fn remove_pid_file(state_dir: &Path) {
    let path = state_dir.join(PID_FILE);
    let ours = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

/// Sends `SIGHUP` to the gateway whose PID file is in `state_dir`; returns its PID.
pub fn signal_reload(state_dir: &Path) -> Result<i32, ServiceError> {
    let path = state_dir.join(PID_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ServiceError::NotRunning(path))
        }
        Err(e) => return Err(ServiceError::BadPidFile(path, e.to_string())),
    };
    let pid: i32 = match text.trim().parse() {
        Ok(pid) if pid > 1 => pid,
        _ => {
            return Err(ServiceError::BadPidFile(
                path,
                format!("\"{}\" is not a process id", text.trim()),
            ))
        }
    };
    // SAFETY: kill(2) with a positive pid and a valid signal number has no memory effects.
    if unsafe { libc::kill(pid, 0) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Err(ServiceError::Stale(path, pid));
        }
        return Err(ServiceError::Signal(pid, e));
    }
    // A PID file left by a gateway that was killed may name a process that reused the PID:
    // SIGHUP would end it. Where /proc tells, only a `serve` process is signalled.
    if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
        let serving = cmdline.split(|b| *b == 0).any(|arg| arg == b"serve");
        if !serving {
            return Err(ServiceError::Stale(path, pid));
        }
    }
    // SAFETY: as above.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(ServiceError::Signal(pid, std::io::Error::last_os_error()));
    }
    Ok(pid)
}

/// The `/health` URL of a gateway listening on `listen` (a wildcard address is probed on
/// loopback).
pub fn health_url(listen: &str) -> String {
    let local = match listen.parse::<std::net::SocketAddr>() {
        Ok(std::net::SocketAddr::V4(a)) if a.ip().is_unspecified() => {
            format!("127.0.0.1:{}", a.port())
        }
        Ok(std::net::SocketAddr::V6(a)) if a.ip().is_unspecified() => {
            format!("[::1]:{}", a.port())
        }
        _ => listen.to_string(),
    };
    format!("http://{local}/health")
}

/// Whether `url` answers HTTP 200 within `timeout`.
pub fn probe(url: &str, timeout: Duration) -> Result<(), ServiceError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    match agent.get(url).call() {
        Ok(response) if response.status().as_u16() == 200 => Ok(()),
        Ok(response) => Err(ServiceError::Unhealthy(
            url.to_string(),
            format!("answered HTTP {}", response.status().as_u16()),
        )),
        Err(e) => Err(ServiceError::Unhealthy(url.to_string(), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        assert_eq!(health_url("0.0.0.0:8080"), "http://127.0.0.1:8080/health");
        assert_eq!(health_url("[::]:9"), "http://[::1]:9/health");
        assert_eq!(health_url("192.168.1.2:80"), "http://192.168.1.2:80/health");
    }

    #[test]
    fn pid_file_round_trip_and_clear_errors() {
        let dir = std::env::temp_dir().join(format!("mcpgw-service-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(
            signal_reload(&dir),
            Err(ServiceError::NotRunning(_))
        ));
        std::fs::write(dir.join(PID_FILE), "not a pid").unwrap();
        assert!(matches!(
            signal_reload(&dir),
            Err(ServiceError::BadPidFile(..))
        ));
        write_pid_file(&dir).unwrap();
        let text = std::fs::read_to_string(dir.join(PID_FILE)).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        remove_pid_file(&dir);
        assert!(!dir.join(PID_FILE).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
