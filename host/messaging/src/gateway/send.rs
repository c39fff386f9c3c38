//! A gateway account's send: destinations as the account's users write
//! them (numbers, `#GROUP`, `@username`, comma-separated), the account's
//! footer and sender, its local-number rules, and its own credit; through
//! the messaging engine, logged with a queue code and one log id per
//! recipient.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Gateway, GatewayError, accounts::Account, numbers, outgoing, phonebook, settings};
use crate::{Kind, MAX_RECIPIENTS, RefusalKind, SendRequest, Status, Submitted, optouts};
use engage_store::StoreError;
use engage_store::idempotency::{Call, Guarded};
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

/// What a send did: its queue code and each destination's outcome, in
/// the order they were given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    pub queue: String,
    pub outcomes: Vec<Outcome>,
}

/// What became of one destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
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
/// each batch is all or nothing, and the whole send is one write: `idem`
/// (the call's Idempotency-Key) replays its answer instead of sending again.
pub async fn send(
    g: &Gateway,
    tenant: &str,
    account: &Account,
    spec: Spec,
    idem: Option<Call>,
    now: i64,
    rid: &str,
) -> Result<Sent, GatewayError> {
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
            let at = super::accounts::zone(&account.timezone).from_naive(local);
            Some(at.ok_or_else(|| GatewayError::Invalid("schedule is out of range".into()))?)
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
    let batches: Vec<Vec<(usize, String, String)>> =
        targets.chunks(MAX_RECIPIENTS).map(<[_]>::to_vec).collect();
    let reqs: Vec<SendRequest> = batches
        .iter()
        .map(|batch| SendRequest {
            to: batch.iter().map(|(_, n, _)| n.clone()).collect(),
            sender: sender.clone(),
            body: Some(body.clone()),
            kind: spec.kind.unwrap_or(account.message_kind),
            schedule_at_ms,
            account: Some(account.credit_account()),
            metadata: metadata.clone(),
            ..SendRequest::default()
        })
        .collect();
    let (t, user, q, msg) = (
        tenant.to_owned(),
        account.username.clone(),
        queue.clone(),
        spec.msg.clone(),
    );
    // Every batch, its log and the inbox messages in one write, so the
    // answer an Idempotency-Key keeps is the whole send's.
    let sent = g
        .messaging
        .send_batch_with(tenant, reqs, idem, now, rid, move |tx, submitted| {
            let mut outcomes = outcomes.clone();
            for (batch, result) in batches.iter().zip(submitted) {
                match result {
                    Submitted::Accepted(messages) => {
                        let logged: Vec<_> = messages
                            .iter()
                            .cloned()
                            .zip(batch.iter().map(|(_, _, shown)| shown.clone()))
                            .filter(|(m, _)| m.status != Status::Rejected)
                            .collect();
                        let mut ids =
                            outgoing::record(tx, &t, &user, &q, &logged, now)?.into_iter();
                        for ((slot, _, shown), m) in batch.iter().zip(&messages) {
                            let id = (m.status != Status::Rejected).then(|| ids.next()).flatten();
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
                    Submitted::Refused(r) => {
                        for (slot, _, shown) in batch {
                            outcomes[*slot] = Some(match r.kind {
                                RefusalKind::InsufficientCredit => {
                                    Outcome::NoCredit { to: shown.clone() }
                                }
                                _ => Outcome::Failed {
                                    to: shown.clone(),
                                    why: r.message.clone(),
                                },
                            });
                        }
                    }
                }
            }
            for (slot, username, shown) in &im_slots {
                let delivered = super::inbound::deliver_im(tx, &t, &user, username, &msg, now)?;
                outcomes[*slot] = Some(match delivered {
                    Some(_) => Outcome::Inbox { to: shown.clone() },
                    None => Outcome::Failed {
                        to: shown.clone(),
                        why: "no such account".into(),
                    },
                });
            }
            Ok(Sent {
                queue: q.clone(),
                outcomes: outcomes.into_iter().flatten().collect(),
            })
        })
        .await?;
    match sent {
        Guarded::Fresh(s) => Ok(s),
        Guarded::Replay(r) => serde_json::from_value(r.body).map_err(|e| {
            GatewayError::Store(StoreError::Corrupt {
                table: "idempotency".into(),
                source: e,
            })
        }),
        Guarded::Conflict => Err(GatewayError::KeyReused),
    }
}
