//! Unsubscribe links: every marketing e-mail carries one, in its
//! `List-Unsubscribe` header (with `List-Unsubscribe-Post: List-Unsubscribe=
//! One-Click`, RFC 8058, so a mailbox provider's "unsubscribe" button works
//! without opening anything) and in a footer.
//!
//! The link names the tenant and the address and is signed with the
//! server's key, so it needs no lookup, never expires (people unsubscribe
//! from old mail), and cannot be made for another address. A `GET` shows a
//! page with a button (link scanners follow every link, so a `GET` must
//! not unsubscribe); a `POST`, the button's or a provider's one-click,
//! opts the address out of the tenant's marketing.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use engage_store::secrets::Sealer;

/// The signature's purpose (see [`Sealer::sign`]).
const PURPOSE: &str = "email-unsubscribe";
/// Bytes of the signature a link carries.
const SIG_BYTES: usize = 16;

/// The path an unsubscribe link's token goes after.
pub const PATH: &str = "/unsubscribe";

/// The token of the unsubscribe link of `address` (lower case) at `tenant`.
pub fn token(sealer: &Sealer, tenant: &str, address: &str) -> String {
    let payload = payload(tenant, address);
    let sig = sealer.sign(PURPOSE, payload.as_bytes());
    format!(
        "{}.{}",
        B64.encode(payload.as_bytes()),
        B64.encode(&sig[..SIG_BYTES])
    )
}

/// The full link, under the server's public URL.
pub fn url(sealer: &Sealer, public_url: &str, tenant: &str, address: &str) -> String {
    format!(
        "{}{PATH}/{}",
        public_url.trim_end_matches('/'),
        token(sealer, tenant, address)
    )
}

/// The (tenant, address) a token was made for; none if it was not made by
/// this server's key (altered, truncated, or made up).
pub fn open(sealer: &Sealer, token: &str) -> Option<(String, String)> {
    let (payload, sig) = token.split_once('.')?;
    let payload = B64.decode(payload).ok()?;
    let sig = B64.decode(sig).ok()?;
    if sig.len() != SIG_BYTES || !sealer.verify(PURPOSE, &payload, &sig) {
        return None;
    }
    let (tenant, address): (String, String) = serde_json::from_slice(&payload).ok()?;
    Some((tenant, address))
}

fn payload(tenant: &str, address: &str) -> String {
    serde_json::json!([tenant, address]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_to_what_it_was_made_for_and_nothing_else_opens() {
        let sealer = Sealer::new([7; 32]);
        let t = token(&sealer, "shop", "ann@example.com");
        assert_eq!(
            open(&sealer, &t),
            Some(("shop".into(), "ann@example.com".into()))
        );
        // Another key, another address with the same signature, a cut one.
        assert_eq!(open(&Sealer::new([8; 32]), &t), None);
        let (_, sig) = t.split_once('.').expect("two parts");
        let forged = format!("{}.{sig}", B64.encode(payload("shop", "bob@example.com")));
        assert_eq!(open(&sealer, &forged), None);
        assert_eq!(open(&sealer, &t[..t.len() - 2]), None);
        assert_eq!(open(&sealer, "nonsense"), None);
    }
}
