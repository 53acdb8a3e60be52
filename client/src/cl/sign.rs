//! The `X-CommerceLayer-Signature` scheme, used on CL's calls and on the callbacks CL
//! receives.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `X-CommerceLayer-Signature` of `body`: base64 (standard, padded) of HMAC-SHA256 keyed with
/// the secret's UTF-8 bytes as written (never hex-decoded), over the exact body bytes.
pub fn sign(secret: &str, body: &[u8]) -> String {
    STANDARD.encode(keyed_mac(secret, body).finalize().into_bytes())
}

/// Whether `signature` is the valid signature of `body`; the comparison is constant time.
pub fn verify(secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(claimed) = STANDARD.decode(signature) else {
        return false;
    };
    // `verify_slice` compares in constant time.
    keyed_mac(secret, body).verify_slice(&claimed).is_ok()
}

fn keyed_mac(secret: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_SECRET: &str = "1c0994cc4e996e8c6ee56a2198f66f3c";
    const VECTOR_BODY: &str =
        r#"{"success":true,"data":{"action_id":"tr_abc123","message":"Payment authorized"}}"#;
    const VECTOR_SIGNATURE: &str = "aO/vfPXJj0E0HOhDrVoo+f8jJP8Aw4+TNxpKDijyIo0=";

    #[test]
    fn signature_matches_the_reference_vector() {
        assert_eq!(
            sign(VECTOR_SECRET, VECTOR_BODY.as_bytes()),
            VECTOR_SIGNATURE
        );
        assert!(verify(
            VECTOR_SECRET,
            VECTOR_BODY.as_bytes(),
            VECTOR_SIGNATURE
        ));
        assert!(!verify("other", VECTOR_BODY.as_bytes(), VECTOR_SIGNATURE));
        assert!(!verify(VECTOR_SECRET, b"{}", VECTOR_SIGNATURE));
        assert!(!verify(
            VECTOR_SECRET,
            VECTOR_BODY.as_bytes(),
            "not base64!"
        ));
        assert!(!verify(VECTOR_SECRET, VECTOR_BODY.as_bytes(), ""));
    }
}
