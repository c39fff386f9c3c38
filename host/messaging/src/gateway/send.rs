//! A gateway account's send: destinations as the account's users write
//! them (numbers, `#GROUP`, `@username`, comma-separated), the account's
//! footer and sender, its local-number rules, and its own credit; through
//! the messaging engine, logged with a queue code and one log id per
//! recipient.

use std::collections::{BTreeMap, HashSet};

use super::{Gateway, GatewayError, accounts::Account, numbers, outgoing, phonebook, settings};
use crate::pricing::PricingError;
use crate::{Kind, MAX_RECIPIENTS, MessageError, SendRequest, Status, optouts};
use engage_store::StoreError;
use engage_store::ids::{parse_sql_datetime, random_hex};

/// What a send asks for.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// Comma-separated numbers, `#GROUP` codes and `@username`s.
    pub to: String,
    pub msg: String,
    pub from: String,
    pub footer: String,
    pub nofooter: bool,
    pub flash: bool,
    pub unicode: bool,
    /// `YYYY-MM-DD hh:mm:ss` in the account's time zone.
    pub schedule: String,
    /// The account's default when not given.
    pub kind: Option<Kind>,
}

/// What became of one destination.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Queued {
        log_id: u64,
        to: String,
    },
    /// An `@username` destination: the text went into that account's
    /// inbox, as an internal message (no SMS).
    Inbox {
        to: String,
    },
    /// Not enough credit for the batch it was in.
    NoCredit {
        to: String,
    },
    /// Not sent: a number that cannot be read, an opted-out recipient, a
    /// provider or route the message could not have.
    Failed {
        to: String,
        why: String,
    },
}

/// Send `spec` from `account`: the queue code and each destination's
/// outcome. Destinations go in batches of the engine's recipient limit;
/// each batch is all or nothing.
pub async fn send(
    g: &Gateway,
    tenant: &str,
    account: &Account,
    spec: Spec,
    now: i64,
    rid: &str,
) -> Result<(String, Vec<Outcome>), GatewayError> {
    if spec.to.trim().is_empty() || spec.msg.trim().is_empty() {
        return Err(GatewayError::Invalid(
            "the destination or the message is empty".into(),
        ));
    }
    let schedule_at_ms = match spec.schedule.trim() {
        "" => None,
        s => {
            let local = parse_sql_datetime(s)
                .ok_or_else(|| GatewayError::Invalid("schedule is YYYY-MM-DD hh:mm:ss".into()))?;
            let offset = super::accounts::offset_minutes(&account.timezone).unwrap_or(0);
            Some(local - offset * 60_000)
        }
    };
    let snap = g.store.read()?;
    let prefix = if account.replace_zero.is_empty() {
        settings(&snap, tenant)?.default_replace_zero
    } else {
        account.replace_zero.clone()
    };
    let mut outcomes: Vec<Option<Outcome>> = Vec::new();
    // (outcome slot, E.164 number, destination as shown)
    let mut targets: Vec<(usize, String, String)> = Vec::new();
    let mut seen = HashSet::new();
    // (outcome slot, username, destination as shown)
    let mut im_slots: Vec<(usize, String, String)> = Vec::new();
    let mut ims = HashSet::new();
    let mut add = |shown: String, number: &str, outcomes: &mut Vec<Option<Outcome>>| {
        let local = numbers::localize(number, &prefix, account.local_length);
        match numbers::to_e164(&local) {
            Some(e164) if seen.insert(e164.clone()) => {
                targets.push((outcomes.len(), e164, shown));
                outcomes.push(None);
            }
            Some(_) => {} // the same number twice: sent once
            None => outcomes.push(Some(Outcome::Failed {
                to: shown,
                why: "not a number the gateway can route".into(),
            })),
        }
    };
    for part in spec.to.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some(code) = part.strip_prefix('#') {
            for mobile in phonebook::members(&snap, tenant, &account.username, code)? {
                add(mobile.clone(), &mobile, &mut outcomes);
            }
        } else if let Some(user) = part.strip_prefix('@') {
            // As playSMS: `@username` is an internal message to that
            // account's inbox, not an SMS; sending to oneself is ignored.
            let Some(user) = super::accounts::normalize_username(user) else {
                outcomes.push(Some(Outcome::Failed {
                    to: part.to_owned(),
                    why: "no such account".into(),
                }));
                continue;
            };
            if user == account.username {
                continue;
            }
            if ims.insert(user.clone()) {
                im_slots.push((outcomes.len(), user, part.to_owned()));
                outcomes.push(None);
            }
        } else {
            add(part.to_owned(), part, &mut outcomes);
        }
    }
    drop(snap);

    let footer = if spec.nofooter {
        String::new()
    } else if spec.footer.trim().is_empty() {
        account.footer.clone()
    } else {
        spec.footer.trim().to_owned()
    };
    let body = if footer.is_empty() {
        spec.msg.replace("\r\n", "\n")
    } else {
        format!("{} {footer}", spec.msg.replace("\r\n", "\n"))
    };
    let sender = Some(spec.from.trim())
        .filter(|f| super::accounts::valid_sender(f))
        .map(str::to_owned)
        .or_else(|| (!account.sender.is_empty()).then(|| account.sender.clone()));
    let queue = random_hex(16);
    let mut metadata = BTreeMap::from([("gateway_queue".to_owned(), queue.clone())]);
    if spec.flash {
        metadata.insert("sms_type".into(), "flash".into());
    }
    if spec.unicode {
        metadata.insert("unicode".into(), "1".into());
    }
    for batch in targets.chunks(MAX_RECIPIENTS) {
        let req = SendRequest {
            to: batch.iter().map(|(_, n, _)| n.clone()).collect(),
            sender: sender.clone(),
            body: Some(body.clone()),
            kind: spec.kind.unwrap_or(account.message_kind),
            schedule_at_ms,
            account: Some(account.credit_account()),
            metadata: metadata.clone(),
            ..SendRequest::default()
        };
        let shown: Vec<String> = batch.iter().map(|(_, _, s)| s.clone()).collect();
        let (t, user, q) = (tenant.to_owned(), account.username.clone(), queue.clone());
        let sent = g
            .messaging
            .send_with(tenant, req, None, now, rid, move |tx, messages| {
                let logged: Vec<_> = messages
                    .iter()
                    .cloned()
                    .zip(shown.iter().cloned())
                    .filter(|(m, _)| m.status != Status::Rejected)
                    .collect();
                let ids = outgoing::record(tx, &t, &user, &q, &logged, now)?;
                let mut ids = ids.into_iter();
                Ok(messages
                    .iter()
                    .map(|m| (m.status != Status::Rejected).then(|| ids.next()).flatten())
                    .collect::<Vec<Option<u64>>>())
            })
            .await;
        match sent {
            Ok((_, ids)) => {
                for ((slot, _, shown), id) in batch.iter().zip(ids) {
                    outcomes[*slot] = Some(match id {
                        Some(log_id) => Outcome::Queued {
                            log_id,
                            to: shown.clone(),
                        },
                        None => Outcome::Failed {
                            to: shown.clone(),
                            why: optouts::OPTED_OUT.into(),
                        },
                    });
                }
            }
            Err(MessageError::Pricing(PricingError::InsufficientCredit { .. })) => {
                for (slot, _, shown) in batch {
                    outcomes[*slot] = Some(Outcome::NoCredit { to: shown.clone() });
                }
            }
            Err(e @ (MessageError::Store(_) | MessageError::Plugin(_))) => return Err(e.into()),
            Err(e) => {
                let why = e.to_string();
                for (slot, _, shown) in batch {
                    outcomes[*slot] = Some(Outcome::Failed {
                        to: shown.clone(),
                        why: why.clone(),
                    });
                }
            }
        }
    }
    if !im_slots.is_empty() {
        let (t, from, msg) = (
            tenant.to_owned(),
            account.username.clone(),
            spec.msg.clone(),
        );
        let wanted: Vec<String> = im_slots.iter().map(|(_, u, _)| u.clone()).collect();
        let delivered = g
            .store
            .write(move |tx| {
                wanted
                    .iter()
                    .map(|u| Ok(super::inbound::deliver_im(tx, &t, &from, u, &msg, now)?.is_some()))
                    .collect::<Result<Vec<bool>, StoreError>>()
            })
            .await?;
        for ((slot, _, shown), ok) in im_slots.into_iter().zip(delivered) {
            outcomes[slot] = Some(if ok {
                Outcome::Inbox { to: shown }
            } else {
                Outcome::Failed {
                    to: shown,
                    why: "no such account".into(),
                }
            });
        }
    }
    Ok((queue, outcomes.into_iter().flatten().collect()))
}
