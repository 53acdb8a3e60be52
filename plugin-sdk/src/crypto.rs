//! Hashing, HMAC (SHA-256, SHA-1), RSA-SHA256 verification, encodings and a constant-time
//! comparison: what PSP signatures and webhook verification need.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rsa::RsaPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::der::{DecodePem, Encode};

/// Why an encoded string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Not valid hexadecimal.
    #[error("invalid hex: {0}")]
    Hex(String),
    /// Not valid standard, padded base64.
    #[error("invalid base64: {0}")]
    Base64(String),
    /// Not an RSA public key or certificate this module reads.
    #[error("invalid RSA public key: {0}")]
    Key(String),
    /// The signature does not verify with the key.
    #[error("the signature does not match")]
    Signature,
}

/// HMAC-SHA256 of `msg` keyed with `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA1 of `msg` keyed with `key`, for PSPs that still sign so (Braintree's webhooks,
/// keyed with the SHA-1 of the private key, say). Prefer SHA-256 wherever the PSP offers it.
pub fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Checks an RSASSA-PKCS1-v1_5 signature with SHA-256 (`SHA256withRSA`, PayPal's webhook
/// signatures) of `msg`. `public_key_pem` is an X.509 certificate (`BEGIN CERTIFICATE`, as
/// PayPal serves from `PAYPAL-CERT-URL`: only its key is used; checking the certificate's
/// issuer and dates, and where it was fetched from, is the caller's), a SubjectPublicKeyInfo
/// (`BEGIN PUBLIC KEY`) or a PKCS#1 key (`BEGIN RSA PUBLIC KEY`).
pub fn verify_rsa_sha256(
    public_key_pem: &str,
    msg: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    let key = VerifyingKey::<Sha256>::new(rsa_public_key(public_key_pem)?);
    let signature = Signature::try_from(signature).map_err(|_| CryptoError::Signature)?;
    key.verify(msg, &signature)
        .map_err(|_| CryptoError::Signature)
}

fn rsa_public_key(pem: &str) -> Result<RsaPublicKey, CryptoError> {
    let pem = pem.trim();
    let bad = |e: &dyn std::fmt::Display| CryptoError::Key(e.to_string());
    if pem.starts_with("-----BEGIN CERTIFICATE-----") {
        let cert = Certificate::from_pem(pem).map_err(|e| bad(&e))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| bad(&e))?;
        RsaPublicKey::from_public_key_der(&spki).map_err(|e| bad(&e))
    } else if pem.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
        RsaPublicKey::from_pkcs1_pem(pem).map_err(|e| bad(&e))
    } else if pem.starts_with("-----BEGIN PUBLIC KEY-----") {
        RsaPublicKey::from_public_key_pem(pem).map_err(|e| bad(&e))
    } else {
        Err(CryptoError::Key(
            "expected a PEM certificate, public key or RSA public key".into(),
        ))
    }
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
    fn hmac_sha1_rfc2202() {
        // RFC 2202, test cases 1 and 2.
        assert_eq!(
            hex_encode(hmac_sha1(&[0x0b; 20], b"Hi There")),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        );
        assert_eq!(
            hex_encode(hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    /// A signature OpenSSL made (`tests/data/README.md`), checked with each form of its key.
    #[test]
    fn rsa_sha256_signatures_made_by_openssl_verify() {
        let message = include_bytes!("../tests/data/rsa_test_message.txt");
        let signature =
            base64_decode(include_str!("../tests/data/rsa_test_signature.b64").trim()).unwrap();
        let keys = [
            include_str!("../tests/data/rsa_test_cert.pem"),
            include_str!("../tests/data/rsa_test_public_key.pem"),
            include_str!("../tests/data/rsa_test_pkcs1.pem"),
        ];
        for key in keys {
            assert_eq!(verify_rsa_sha256(key, message, &signature), Ok(()));
            // One bit changed in the message, or in the signature: refused.
            let mut tampered = message.to_vec();
            tampered[0] ^= 1;
            assert_eq!(
                verify_rsa_sha256(key, &tampered, &signature),
                Err(CryptoError::Signature)
            );
            let mut forged = signature.clone();
            forged[10] ^= 1;
            assert_eq!(
                verify_rsa_sha256(key, message, &forged),
                Err(CryptoError::Signature)
            );
            assert_eq!(
                verify_rsa_sha256(key, message, &signature[..100]),
                Err(CryptoError::Signature)
            );
        }
        // Not a key at all, or a certificate whose body is damaged.
        assert!(matches!(
            verify_rsa_sha256("not a key", message, &signature),
            Err(CryptoError::Key(_))
        ));
        let damaged = keys[0].replacen("MII", "MIJ", 1);
        assert!(matches!(
            verify_rsa_sha256(&damaged, message, &signature),
            Err(CryptoError::Key(_))
        ));
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
