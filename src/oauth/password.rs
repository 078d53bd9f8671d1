//! The owner password: PBKDF2-HMAC-SHA256 with a random salt, built on `sha2` alone.

use sha2::{Digest, Sha256};

/// Iterations of PBKDF2: slow enough to make guessing costly, quick enough on a router (about a
/// quarter of a second on a small ARM board).
pub const ITERATIONS: u32 = 100_000;
const SCHEME: &str = "pbkdf2-sha256";

/// An HMAC-SHA256 key with its padded blocks already absorbed, so that each MAC costs only the
/// message's hashing (PBKDF2 computes a hundred thousand of them).
#[derive(Clone)]
struct HmacKey {
    inner: Sha256,
    outer: Sha256,
}

impl HmacKey {
    fn new(key: &[u8]) -> HmacKey {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut inner = Sha256::new();
        inner.update(block.map(|b| b ^ 0x36));
        let mut outer = Sha256::new();
        outer.update(block.map(|b| b ^ 0x5c));
        HmacKey { inner, outer }
    }

    fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        inner.update(message);
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    HmacKey::new(key).mac(message)
}

/// PBKDF2-HMAC-SHA256 (RFC 8018) with a 32-byte output.
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let key = HmacKey::new(password);
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = key.mac(&first);
    let mut out = u;
    for _ in 1..iterations {
        u = key.mac(&u);
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A stored hash: `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| format!("the system random source failed: {e}"))?;
    let hash = pbkdf2_sha256(password.as_bytes(), &salt, ITERATIONS);
    Ok(format!(
        "{SCHEME}${ITERATIONS}${}${}",
        crate::tokens::hex(&salt),
        crate::tokens::hex(&hash)
    ))
}

/// Whether `password` matches `stored` (compared in constant time).
pub fn verify_password(password: &str, stored: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let [scheme, iterations, salt, hash] = parts.as_slice() else {
        return false;
    };
    let (Ok(iterations), Some(salt), Some(hash)) =
        (iterations.parse::<u32>(), from_hex(salt), from_hex(hash))
    else {
        return false;
    };
    if *scheme != SCHEME || iterations == 0 || iterations > 10_000_000 {
        return false;
    }
    let derived = pbkdf2_sha256(password.as_bytes(), &salt, iterations);
    crate::tokens::constant_time_eq(&derived, &hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            crate::tokens::hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn pbkdf2_matches_rfc_7914_vector() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256, P="passwd", S="salt", c=1, first 32 bytes.
        let out = pbkdf2_sha256(b"passwd", b"salt", 1);
        assert_eq!(
            crate::tokens::hex(&out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }

    #[test]
    fn hash_and_verify() {
        let stored = hash_password("correct horse").expect("hash");
        assert!(stored.starts_with("pbkdf2-sha256$100000$"));
        assert!(verify_password("correct horse", &stored));
        assert!(!verify_password("wrong horse", &stored));
        assert!(!verify_password("correct horse", "garbage"));
        assert_ne!(
            stored,
            hash_password("correct horse").expect("hash"),
            "salted"
        );
    }
}
