//! Background threads that outlive a panic: a backend's supervisor, the MCP face's keep-alive,
//! the OpenAI face's model refresh and the audit writer run their loop through
//! [`restart_on_panic`], so that one bug on one input cannot leave a backend that never
//! reconnects, sessions that are never cleaned up, or an audit log that stops. A backend's
//! reader thread (stdio, legacy SSE) runs through [`contain`]: a panic ends that connection the
//! way its end would (calls fail at once, the supervisor reconnects), never silently.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// How long a thread waits before running its loop again after a panic (so that a loop that
/// panics at once cannot spin).
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// Runs `body` until it returns; if it panics, logs it and runs it again after a pause.
/// Returns how many times it was restarted.
pub fn restart_on_panic(what: &str, mut body: impl FnMut()) -> usize {
    restart_on_panic_after(what, RESTART_AFTER, &mut body)
}

fn restart_on_panic_after(what: &str, pause: Duration, body: &mut dyn FnMut()) -> usize {
    let mut restarts = 0;
    loop {
        match contain(what, &mut *body) {
            Ok(()) => return restarts,
            Err(_) => {
                log::error!("restarting {what}");
                restarts += 1;
                std::thread::sleep(pause);
            }
        }
    }
}

/// Runs `body` once; a panic is logged and returned as its message.
pub fn contain<T>(what: &str, body: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(body)).map_err(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        log::error!("{what} panicked ({why})");
        format!("panicked: {why}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_panics_is_run_again_until_it_returns() {
        let mut runs = 0;
        let restarts = restart_on_panic_after("test loop", Duration::ZERO, &mut || {
            runs += 1;
            if runs < 3 {
                panic!("run {runs} fails");
            }
        });
        assert_eq!((runs, restarts), (3, 2));
        assert_eq!(restart_on_panic("a loop that ends", || {}), 0);
    }

    #[test]
    fn a_contained_panic_is_its_message() {
        assert_eq!(contain("test", || 7), Ok(7));
        let why = contain("test", || -> u8 { panic!("bad input") });
        assert_eq!(why, Err("panicked: bad input".to_string()));
    }
}
