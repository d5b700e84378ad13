//! Canal's client authentication: MySQL 4.1's challenge-response. The server sends a
//! random seed; the client answers `hex(SHA1(pw) XOR SHA1(seed + SHA1(SHA1(pw))))`;
//! the server, which stores only `SHA1(SHA1(pw))` (Canal's `canal.passwd`), recovers
//! `SHA1(pw)` from the answer and checks that its SHA1 is the stored hash.
//!
//! Invariants: the password itself is never stored or compared, only its double hash;
//! the comparison is constant-time; a malformed answer is a failed login, never a panic.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// `SHA1(SHA1(password))`, what the server keeps.
pub type Stored = [u8; 20];

/// The stored form of a Canal `canal.passwd` value: 40 hex digits (MySQL's
/// `PASSWORD()` without its leading `*`, which is accepted too).
pub fn parse_stored(hex: &str) -> Option<Stored> {
    let hex = hex.trim().trim_start_matches('*');
    let bytes = from_hex(hex)?;
    bytes.try_into().ok()
}

/// The stored form of a plain password.
pub fn stored_of(password: &[u8]) -> Stored {
    Sha1::digest(Sha1::digest(password)).into()
}

/// What a client sends for `password` and `seed` (before hex encoding).
pub fn scramble411(password: &[u8], seed: &[u8]) -> [u8; 20] {
    let pass1: [u8; 20] = Sha1::digest(password).into();
    let pass2: [u8; 20] = Sha1::digest(pass1).into();
    let mut h = Sha1::new();
    h.update(seed);
    h.update(pass2);
    let mut out: [u8; 20] = h.finalize().into();
    for (o, p) in out.iter_mut().zip(pass1) {
        *o ^= p;
    }
    out
}

/// Whether `answer` (hex of a scramble, as the client sent it) proves knowledge of the
/// password whose double hash is `stored`, for `seed`.
pub fn verify(answer: &[u8], stored: &Stored, seed: &[u8]) -> bool {
    let Some(scramble) = std::str::from_utf8(answer).ok().and_then(from_hex) else {
        return false;
    };
    if scramble.len() != 20 {
        return false;
    }
    let mut h = Sha1::new();
    h.update(seed);
    h.update(stored);
    let mut pass1: [u8; 20] = h.finalize().into();
    for (p, s) in pass1.iter_mut().zip(&scramble) {
        *p ^= s;
    }
    let candidate: [u8; 20] = Sha1::digest(pass1).into();
    candidate.ct_eq(stored).into()
}

/// Lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_password_passes_and_nothing_else_does() {
        let stored = stored_of(b"canal");
        // MySQL's PASSWORD('canal') = *E3619321C1A937C46A0D8BD1DAC39F93B27D4458, the
        // `canal.passwd` of Canal's example configuration.
        assert_eq!(
            parse_stored("*E3619321C1A937C46A0D8BD1DAC39F93B27D4458"),
            Some(stored)
        );
        let seed = b"01234567";
        let answer = to_hex(&scramble411(b"canal", seed));
        assert!(verify(answer.as_bytes(), &stored, seed));
        assert!(verify(answer.to_uppercase().as_bytes(), &stored, seed));
        // Another password, another seed, a replay, garbage, the plain password.
        let wrong = to_hex(&scramble411(b"canal!", seed));
        assert!(!verify(wrong.as_bytes(), &stored, seed));
        assert!(!verify(answer.as_bytes(), &stored, b"76543210"));
        for junk in [
            &b""[..],
            b"zz",
            b"canal",
            &[0xff; 40],
            &answer.as_bytes()[..38],
        ] {
            assert!(!verify(junk, &stored, seed), "{junk:?}");
        }
        assert_eq!(parse_stored("not hex"), None);
        assert_eq!(parse_stored("abcd"), None);
    }
}
