//! Standard Webhooks signatures (<https://www.standardwebhooks.com>).
//!
//! A secret reads `whsec_<base64 of 32 random bytes>`. A message with id `msg_id`, sent at
//! `timestamp` (Unix seconds) with body `body`, is signed as
//! `v1,<base64 of HMAC-SHA256(secret bytes, "<msg_id>.<timestamp>.<body>")>`; the
//! `webhook-signature` header lists one such signature per live secret, separated by spaces
//! (during a rotation both the new and the previous secret sign).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What every secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new random secret.
pub fn new_secret() -> String {
    let mut bytes = [0_u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The key bytes of a secret (`whsec_` and base64), or `None` when it is not one.
fn key_of(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix(SECRET_PREFIX)?).ok().filter(|k| !k.is_empty())
}

/// The `webhook-signature` header value for a message, signed with each of `secrets`.
pub fn sign(secrets: &[String], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .filter_map(|secret| key_of(secret))
        .map(|key| format!("v1,{}", STANDARD.encode(mac(&key, msg_id, timestamp, body))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `header` (a `webhook-signature` value) holds a valid signature of the message by
/// `secret`, compared in constant time. What a receiver checks (it should also refuse a
/// timestamp far from its clock).
pub fn verify(secret: &str, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(key) = key_of(secret) else {
        return false;
    };
    let expected = mac(&key, msg_id, timestamp, body);
    header.split(' ').filter_map(|s| s.strip_prefix("v1,")).filter_map(|s| STANDARD.decode(s).ok()).any(|sig| {
        use subtle::ConstantTimeEq;
        bool::from(sig.as_slice().ct_eq(expected.as_slice()))
    })
}

fn mac(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_example_verifies() {
        // The example from the Standard Webhooks specification's reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(&[secret.to_owned()], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, &signature));
        assert!(!verify(secret, "msg_other", 1614265330, body, &signature));
    }

    #[test]
    fn both_secrets_sign_during_a_rotation() {
        let (old, new) = (new_secret(), new_secret());
        assert!(old.starts_with(SECRET_PREFIX) && old != new);
        let header = sign(&[new.clone(), old.clone()], "msg_1", 10, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(&old, "msg_1", 10, b"{}", &header));
        assert!(verify(&new, "msg_1", 10, b"{}", &header));
        assert!(!verify(&new_secret(), "msg_1", 10, b"{}", &header));
    }
}
