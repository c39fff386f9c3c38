//! The social graph: a player's external identities (Facebook id, device
//! id, email, ...) and friends, per tenant.
//!
//! An identity is a (mode, external id) pair, e.g. (`fb`, `123456`), linked
//! to at most one player. Friends are identities too, because an app learns
//! them from the social network before they play; a friend is *playing*
//! when the identity is linked to a registered player. The mode `player`
//! names a player by its Engage id directly.

use serde::{Deserialize, Serialize};

use crate::players;
use engage_store::ids::valid_id;
use engage_store::{Reader, StoreError, Table, Tx, key, prefix};

/// (tenant, mode, external id) → player.
const IDENTITIES: Table = Table::new("identities");
/// (tenant, player, mode) → external id.
const PLAYER_IDENTITIES: Table = Table::new("player_identities");
/// (tenant, player, mode, external id) → nothing: the player's friends.
const FRIENDS: Table = Table::new("friends");

/// The mode whose ids are Engage player ids.
pub const PLAYER_MODE: &str = "player";

/// The most friends one player may have.
pub const MAX_FRIENDS: usize = 5000;

/// The most identities (one per mode) one player may have.
pub const MAX_IDENTITIES: usize = 32;

/// What can go wrong in the social graph.
#[derive(Debug, thiserror::Error)]
pub enum SocialError {
    #[error("player `{0}` does not exist")]
    PlayerNotFound(String),
    #[error("a mode is 1 to 32 letters, digits, `_` or `-`; an id 1 to 128 characters")]
    Invalid,
    #[error("identity {mode}:{id} already belongs to another player")]
    Taken { mode: String, id: String },
    #[error("a player has at most {MAX_FRIENDS} friends")]
    TooManyFriends,
    #[error("a player has at most {MAX_IDENTITIES} identities; unlink one first")]
    TooManyIdentities,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An external identity.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct Identity {
    /// 1 to 32 letters, digits, `_` or `-` (`facebook`, `email`, …).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,32}$")]
    pub mode: String,
    #[schema(value_type = engage_store::ids::ClientId)]
    pub id: String,
}

/// A friend, and the player behind it when the friend plays.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Friend {
    pub mode: String,
    pub id: String,
    pub player: Option<String>,
}

fn valid_mode(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 32
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check(i: &Identity) -> Result<(), SocialError> {
    if valid_mode(&i.mode) && valid_id(&i.id) {
        Ok(())
    } else {
        Err(SocialError::Invalid)
    }
}

/// The player an identity names, if registered.
pub fn resolve(
    src: &impl Reader,
    tenant: &str,
    mode: &str,
    id: &str,
) -> Result<Option<String>, StoreError> {
    if mode == PLAYER_MODE {
        return Ok(players::exists(src, tenant, id)?.then(|| id.to_owned()));
    }
    let Some(p) = src.get_raw(IDENTITIES, &key(&[tenant, mode, id]))? else {
        return Ok(None);
    };
    let p = String::from_utf8_lossy(&p).into_owned();
    // A deleted player's identities name nobody.
    Ok(players::exists(src, tenant, &p)?.then_some(p))
}

/// The first registered player any of `candidates` names, in order.
pub fn resolve_first(
    src: &impl Reader,
    tenant: &str,
    candidates: &[Identity],
) -> Result<Option<String>, StoreError> {
    for c in candidates {
        if let Some(p) = resolve(src, tenant, &c.mode, &c.id)? {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// Link `identity` to `player`, replacing the player's previous id in that
/// mode (inside a write job).
pub fn link(
    tx: &mut Tx,
    tenant: &str,
    player: &str,
    identity: &Identity,
) -> Result<(), SocialError> {
    check(identity)?;
    if identity.mode == PLAYER_MODE {
        return Err(SocialError::Invalid);
    }
    if !players::exists(tx, tenant, player)? {
        return Err(SocialError::PlayerNotFound(player.to_owned()));
    }
    let ik = key(&[tenant, &identity.mode, &identity.id]);
    if let Some(owner) = tx.get_raw(IDENTITIES, &ik)?
        && owner != player.as_bytes()
        && players::exists(tx, tenant, &String::from_utf8_lossy(&owner))?
    {
        return Err(SocialError::Taken {
            mode: identity.mode.clone(),
            id: identity.id.clone(),
        });
    }
    let pk = key(&[tenant, player, &identity.mode]);
    let known = tx.get_raw(PLAYER_IDENTITIES, &pk)?;
    if known.is_none()
        && !engage_store::below_cap(
            tx,
            PLAYER_IDENTITIES,
            &prefix(&[tenant, player]),
            MAX_IDENTITIES,
        )?
    {
        return Err(SocialError::TooManyIdentities);
    }
    if let Some(old) = known {
        tx.remove(
            IDENTITIES,
            &key(&[tenant, &identity.mode, &String::from_utf8_lossy(&old)]),
        )?;
    }
    tx.put_raw(IDENTITIES, &ik, player.as_bytes())?;
    tx.put_raw(PLAYER_IDENTITIES, &pk, identity.id.as_bytes())?;
    Ok(())
}

/// Remove the player's identity in `mode`; true if there was one.
pub fn unlink(tx: &mut Tx, tenant: &str, player: &str, mode: &str) -> Result<bool, SocialError> {
    if !valid_mode(mode) {
        return Err(SocialError::Invalid);
    }
    let pk = key(&[tenant, player, mode]);
    let Some(old) = tx.get_raw(PLAYER_IDENTITIES, &pk)? else {
        return Ok(false);
    };
    tx.remove(
        IDENTITIES,
        &key(&[tenant, mode, &String::from_utf8_lossy(&old)]),
    )?;
    tx.remove(PLAYER_IDENTITIES, &pk)?;
    Ok(true)
}

/// A player's identities.
pub fn identities(
    src: &impl Reader,
    tenant: &str,
    player: &str,
) -> Result<Vec<Identity>, StoreError> {
    let p = prefix(&[tenant, player]);
    Ok(src
        .scan_raw(PLAYER_IDENTITIES, &p, None, MAX_IDENTITIES, false)?
        .into_iter()
        .map(|(k, v)| Identity {
            mode: k[p.len()..].to_owned(),
            id: String::from_utf8_lossy(&v).into_owned(),
        })
        .collect())
}

/// Replace a player's friends (inside a write job).
pub fn set_friends(
    tx: &mut Tx,
    tenant: &str,
    player: &str,
    friends: &[Identity],
) -> Result<usize, SocialError> {
    if friends.len() > MAX_FRIENDS {
        return Err(SocialError::TooManyFriends);
    }
    for f in friends {
        check(f)?;
    }
    if !players::exists(tx, tenant, player)? {
        return Err(SocialError::PlayerNotFound(player.to_owned()));
    }
    let p = prefix(&[tenant, player]);
    for (k, _) in tx.scan_raw(FRIENDS, &p, None, MAX_FRIENDS, false)? {
        tx.remove(FRIENDS, &k)?;
    }
    let mut set: Vec<&Identity> = friends.iter().collect();
    set.sort();
    set.dedup();
    for f in &set {
        tx.put_raw(FRIENDS, &key(&[tenant, player, &f.mode, &f.id]), b"")?;
    }
    Ok(set.len())
}

/// A player's friends, each with the player behind it when it plays.
pub fn friends(src: &impl Reader, tenant: &str, player: &str) -> Result<Vec<Friend>, StoreError> {
    let p = prefix(&[tenant, player]);
    let mut out = Vec::new();
    for (k, _) in src.scan_raw(FRIENDS, &p, None, MAX_FRIENDS, false)? {
        let Some((mode, id)) = engage_store::split_first(&k[p.len()..]) else {
            continue;
        };
        let playing = resolve(src, tenant, mode, id)?;
        out.push(Friend {
            mode: mode.to_owned(),
            id: id.to_owned(),
            player: playing,
        });
    }
    Ok(out)
}

/// The registered players among a player's friends, without duplicates or
/// the player itself.
pub fn playing_friends(
    src: &impl Reader,
    tenant: &str,
    player: &str,
) -> Result<Vec<String>, StoreError> {
    let mut out: Vec<String> = friends(src, tenant, player)?
        .into_iter()
        .filter_map(|f| f.player)
        .filter(|p| p != player)
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}
