//! Secrets at rest: provider credentials (Twilio auth tokens, Kannel
//! passwords, BSG keys) are sealed with XChaCha20-Poly1305 before they are
//! stored, so a copy of the database file (a backup, a disk sent for
//! repair) does not hand them out.
//!
//! The key comes from `secret_key` in the configuration or the
//! `ENGAGE_SECRET_KEY` environment variable (64 hex digits); without one, a
//! key is generated on first start and kept in `secret.key` in the data
//! directory (mode 0600) — which protects a copy of the database alone, not
//! a copy of the whole directory. Set the key explicitly in production and
//! keep it apart from the data.

use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

/// What a sealed value starts with (so values stored before sealing was
/// introduced are still read, and sealed on their next write).
const MAGIC: &[u8] = b"sealed1:";
const NONCE: usize = 24;

/// A sealed value could not be opened: the key is not the one it was
/// sealed with, or the stored bytes were altered.
#[derive(Debug, thiserror::Error)]
#[error(
    "a stored secret could not be decrypted: the secret key (ENGAGE_SECRET_KEY, or secret.key in the data directory) is not the one it was stored with"
)]
pub struct OpenError;

/// The server's key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the secret key must be 64 hex digits (32 bytes); set ENGAGE_SECRET_KEY or `secret_key` to one"
    )]
    BadConfigured,
    #[error(
        "secret.key in the data directory is not 64 hex digits; restore it from a backup, or remove it only if nothing sealed with it is stored"
    )]
    BadFile,
    #[error(
        "a shared database needs the secret key set (ENGAGE_SECRET_KEY or `secret_key`, 64 hex digits, the same on every host): a key generated into one host's data directory would not open what another host sealed. Generate one with `openssl rand -hex 32`"
    )]
    SharedNeedsKey,
    #[error("the secret key file in the data directory: {0}")]
    Io(#[from] std::io::Error),
}

/// Seals and opens secrets with the server's key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Arc<XChaCha20Poly1305>,
    /// Signs what Engage hands out and must recognise when it comes back
    /// (an unsubscribe link, a webhook URL): derived from the key, so no
    /// second secret needs keeping, and never the sealing key itself.
    signing: Arc<[u8; 32]>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(…)")
    }
}

impl Sealer {
    /// A sealer with the 32-byte `key`.
    pub fn new(key: [u8; 32]) -> Sealer {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(b"engage-signing-key-v1:");
        h.update(key);
        Sealer {
            cipher: Arc::new(XChaCha20Poly1305::new(Key::from_slice(&key))),
            signing: Arc::new(h.finalize().into()),
        }
    }

    /// HMAC-SHA256 of `data` for `purpose`: a signature only this server
    /// (or a host with the same key) makes. Purposes keep one kind of
    /// signed thing from standing in for another.
    pub fn sign(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.signing[..])
            .expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Whether `signature` is [`Sealer::sign`]'s for `data`, compared in
    /// constant time; a prefix of at least 16 bytes is accepted (links
    /// carry a shortened one).
    pub fn verify(&self, purpose: &str, data: &[u8], signature: &[u8]) -> bool {
        let full = self.sign(purpose, data);
        signature.len() >= 16
            && signature.len() <= full.len()
            && full[..signature.len()]
                .iter()
                .zip(signature)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// The key from `configured` (hex), else from `secret.key` in `data`,
    /// created on first use; a `shared` store (many hosts) needs it
    /// configured.
    pub fn load(
        configured: Option<&str>,
        data: &cap_std::fs::Dir,
        shared: bool,
    ) -> Result<Sealer, KeyError> {
        if let Some(hex) = configured {
            return Ok(Sealer::new(
                parse_key(hex.trim()).ok_or(KeyError::BadConfigured)?,
            ));
        }
        if shared {
            return Err(KeyError::SharedNeedsKey);
        }
        const FILE: &str = "secret.key";
        if data.exists(FILE) {
            let text = data.read_to_string(FILE)?;
            return Ok(Sealer::new(
                parse_key(text.trim()).ok_or(KeyError::BadFile)?,
            ));
        }
        let mut key = [0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            panic!("the operating system's random source failed");
        }
        crate::files::write_private(data, FILE, &format!("{}\n", crate::ids::hex(&key)))?;
        tracing::warn!(
            "generated a secret key in the data directory; set ENGAGE_SECRET_KEY to keep it apart from the data"
        );
        Ok(Sealer::new(key))
    }

    /// `plain`, sealed with a fresh random nonce.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        if getrandom::fill(&mut nonce).is_err() {
            // Without randomness a nonce could repeat: refuse to go on.
            panic!("the operating system's random source failed");
        }
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), plain)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plain bytes of a stored value: opened when sealed, as they are
    /// when stored before sealing existed.
    pub fn open(&self, stored: &[u8]) -> Result<Vec<u8>, OpenError> {
        let Some(rest) = stored.strip_prefix(MAGIC) else {
            return Ok(stored.to_vec());
        };
        let (nonce, sealed) = rest.split_at_checked(NONCE).ok_or(OpenError)?;
        self.cipher
            .decrypt(XNonce::from_slice(nonce), sealed)
            .map_err(|_| OpenError)
    }

    /// Whether `stored` is sealed.
    pub fn is_sealed(stored: &[u8]) -> bool {
        stored.starts_with(MAGIC)
    }
}

fn parse_key(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_legacy_values_pass() {
        let a = Sealer::new([7; 32]);
        let sealed = a.seal(b"{\"auth_token\":\"s3cret\"}");
        assert!(Sealer::is_sealed(&sealed));
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(
            a.open(&sealed).ok().as_deref(),
            Some(&b"{\"auth_token\":\"s3cret\"}"[..])
        );
        assert!(Sealer::new([8; 32]).open(&sealed).is_err());
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(a.open(&altered).is_err());
        assert_eq!(
            a.open(b"{\"plain\":1}").ok().as_deref(),
            Some(&b"{\"plain\":1}"[..])
        );
        assert_ne!(a.seal(b"x"), a.seal(b"x"), "a fresh nonce each time");
        assert!(parse_key(&"ab".repeat(32)).is_some());
        assert!(parse_key("abc").is_none());
    }
}
