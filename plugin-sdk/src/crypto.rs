//! Hashing, HMAC, encodings and a constant-time comparison: what PSP signatures and webhook
//! verification need.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Why an encoded string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Not valid hexadecimal.
    #[error("invalid hex: {0}")]
    Hex(String),
    /// Not valid standard, padded base64.
    #[error("invalid base64: {0}")]
    Base64(String),
}

/// HMAC-SHA256 of `msg` keyed with `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lower-case hexadecimal.
pub fn hex_encode(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(bytes)
}

/// Decodes hexadecimal (either case).
pub fn hex_decode(s: &str) -> Result<Vec<u8>, CryptoError> {
    hex::decode(s).map_err(|e| CryptoError::Hex(e.to_string()))
}

/// Standard base64 with padding.
pub fn base64_encode(bytes: impl AsRef<[u8]>) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard, padded base64.
pub fn base64_decode(s: &str) -> Result<Vec<u8>, CryptoError> {
    STANDARD
        .decode(s)
        .map_err(|e| CryptoError::Base64(e.to_string()))
}

/// Compares two byte strings in time that depends only on their lengths, so a signature check
/// does not leak how many leading bytes matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimiser from turning the fold into an early-exit comparison.
    core::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_known_vector() {
        let body =
            br#"{"success":true,"data":{"action_id":"tr_abc123","message":"Payment authorized"}}"#;
        let mac = hmac_sha256(b"1c0994cc4e996e8c6ee56a2198f66f3c", body);
        assert_eq!(
            base64_encode(mac),
            "aO/vfPXJj0E0HOhDrVoo+f8jJP8Aw4+TNxpKDijyIo0="
        );
    }

    #[test]
    fn hmac_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex_encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            hex_encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn encodings_round_trip() {
        assert_eq!(hex_encode([0x00, 0xab, 0xff]), "00abff");
        assert_eq!(hex_decode("00ABff").unwrap(), vec![0x00, 0xab, 0xff]);
        assert!(matches!(hex_decode("zz"), Err(CryptoError::Hex(_))));
        assert!(matches!(hex_decode("abc"), Err(CryptoError::Hex(_))));
        assert_eq!(base64_encode(b"hi?"), "aGk/");
        assert_eq!(base64_encode(b"h"), "aA==");
        assert_eq!(base64_decode("aA==").unwrap(), b"h");
        assert!(matches!(base64_decode("aA"), Err(CryptoError::Base64(_))));
        assert!(matches!(base64_decode("a-_="), Err(CryptoError::Base64(_))));
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
