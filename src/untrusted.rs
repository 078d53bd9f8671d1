//! Text that came from outside (a client's name, an id, a URL, a header) made safe to put in a
//! log line, a terminal, or an HTTP header.
//!
//! Logs and `oauth list` must show what an outsider sent without letting it forge a line
//! (a `\n`) or drive the terminal (an ANSI escape); and an answer's headers must never carry
//! CR, LF or NUL, which would let a value split the head and add headers or a body of its own.

use std::fmt;

/// Longest piece of untrusted text shown in a log line, in characters.
pub const LOG_CHARS: usize = 200;

/// `text` for a log line or a terminal: control characters escaped (`\n`, `\u{1b}`, ...),
/// cut to [`LOG_CHARS`] characters with a note of how much was left out.
pub fn for_log(text: &str) -> Shown<'_> {
    Shown {
        text,
        max_chars: LOG_CHARS,
    }
}

/// [`for_log`] with another length.
pub fn shortened(text: &str, max_chars: usize) -> Shown<'_> {
    Shown { text, max_chars }
}

/// Untrusted text as it is shown: see [`for_log`].
pub struct Shown<'a> {
    text: &'a str,
    max_chars: usize,
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, (i, c)) in self.text.char_indices().enumerate() {
            if shown == self.max_chars {
                let rest = self.text.len() - i;
                return write!(f, "... ({rest} more bytes)");
            }
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202e}') {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// `text` with control characters dropped and cut to `max_chars` characters: for names an
/// outsider chooses that are kept and shown later (a client's name).
pub fn clean_name(text: &str, max_chars: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{202e}'))
        .take(max_chars)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Whether `value` may be written as an HTTP header value: no CR, LF, NUL or other control
/// character but horizontal tab, and visible ASCII only (the gateway writes no other).
pub fn header_value_ok(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Whether `name` is an HTTP header name (an RFC 9110 token).
pub fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_cannot_forge_a_line_or_reach_the_terminal() {
        let forged = "app\n2026-01-01T00:00:00Z INFO owner password changed\u{1b}[31m";
        let shown = for_log(forged).to_string();
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}'),
            "{shown}"
        );
        assert!(
            shown.contains("\\n2026") && shown.contains("\\u{1b}[31m"),
            "{shown}"
        );
        assert_eq!(for_log("Claude").to_string(), "Claude");
    }

    #[test]
    fn long_text_is_cut_with_a_note() {
        let long = "x".repeat(1_000_000);
        let shown = for_log(&long).to_string();
        assert!(shown.len() < LOG_CHARS + 40, "{}", shown.len());
        assert!(shown.ends_with("(999800 more bytes)"), "{shown}");
        assert_eq!(shortened("héllo", 2).to_string(), "hé... (3 more bytes)");
    }

    #[test]
    fn names_lose_control_characters() {
        assert_eq!(clean_name(" My\napp\u{1b}[31m ", 100), "Myapp[31m");
        assert_eq!(clean_name(&"é".repeat(300), 100).chars().count(), 100);
    }

    #[test]
    fn header_values_refuse_cr_lf_nul_and_controls() {
        assert!(header_value_ok("https://claude.ai/cb?code=a%0D%0A"));
        assert!(header_value_ok("Bearer realm=\"x\",\terror=\"y\""));
        for bad in ["a\rb", "a\nb", "a\0b", "a\u{7f}", "é", "a\u{1b}b"] {
            assert!(!header_value_ok(bad), "{bad:?}");
        }
        assert!(header_name_ok("Mcp-Session-Id"));
        assert!(!header_name_ok("Bad Name") && !header_name_ok("") && !header_name_ok("a:b"));
    }

    /// Every byte string either passes whole or is refused: no value with CR, LF or NUL passes.
    #[test]
    fn no_value_with_a_line_break_passes_for_any_input() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| (state.rotate_left(i as u32 * 5) & 0xff) as u8)
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            if header_value_ok(&text) {
                assert!(!text.contains(['\r', '\n', '\0']), "{text:?}");
            }
        }
    }
}
