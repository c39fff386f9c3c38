//! Inbound SMS: from a provider's webhook or injected by an admin, stored,
//! matched by its first word to the tenant's STOP / START / HELP words or
//! to a keyword an account owns, and forwarded to the owner's inbox (and
//! mobile) as the owner configured. What matches nothing is kept as
//! unhandled for admins to see.

use serde::{Deserialize, Serialize};

use super::{Gateway, GatewayError, accounts, numbers, settings};
use crate::{Kind, SendRequest, optouts};
use engage_store::idempotency::{self, Call, Guarded};
use engage_store::{Reader, StoreError, Table, Tx, key, prefix, seq_part};

/// (tenant, incoming id) → [`Incoming`].
const INCOMING: Table = Table::new("gateway_incoming");
/// (tenant, username, inbox id) → [`InboxEntry`].
const INBOX: Table = Table::new("gateway_inbox");
/// (tenant, KEYWORD) → [`Keyword`].
const KEYWORDS: Table = Table::new("gateway_keywords");

/// What an inbound SMS was taken as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Handling {
    /// A keyword an account owns.
    Keyword,
    /// One of the stop words: the sender opted out.
    OptOut,
    /// One of the start words: the sender opted back in.
    OptIn,
    /// One of the help words.
    Help,
    /// Nothing matched.
    Unhandled,
}

/// An inbound SMS as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Incoming {
    pub id: u64,
    /// The sender, E.164 when it could be read so.
    pub src: String,
    /// The number it was sent to.
    pub dst: String,
    /// The matched first word, upper case; empty when unhandled.
    pub keyword: String,
    /// The text after the keyword (the whole text when unhandled).
    pub msg: String,
    pub handling: Handling,
    /// The keyword's owner.
    pub owner: Option<String>,
    /// Where it came from: `inject`, `api`, `twilio`, `kannel`.
    pub source: String,
    /// The SMSC or provider that received it.
    pub smsc: String,
    pub at_ms: i64,
}

impl Incoming {
    pub fn handled(&self) -> bool {
        self.handling != Handling::Unhandled
    }
}

/// A message in an account's inbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InboxEntry {
    pub id: u64,
    pub src: String,
    pub dst: String,
    pub msg: String,
    pub incoming_id: u64,
    pub at_ms: i64,
}

/// A keyword and the account that owns it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Keyword {
    pub keyword: String,
    pub account: String,
    /// Sent back to the sender (transactional, paid by the owner).
    pub reply: Option<String>,
}

/// An SMS as a provider (or an admin) hands it over.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Inbound {
    /// The sender's number (its digits and `+` are kept).
    #[schema(pattern = "[0-9]")]
    pub from: String,
    #[serde(default)]
    pub to: String,
    /// Not empty, not only spaces.
    #[schema(pattern = "\\S")]
    pub text: String,
    #[serde(default)]
    pub smsc: String,
    #[serde(default = "api")]
    pub source: String,
}

fn api() -> String {
    "api".into()
}

/// A keyword as matched: upper case letters, digits, `-`, `_`; 1 to 32.
pub fn normalize_keyword(raw: &str) -> Option<String> {
    let k = raw.trim().to_uppercase();
    let ok = (1..=32).contains(&k.chars().count())
        && k.chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_');
    ok.then_some(k)
}

/// The most keywords a tenant keeps.
pub const MAX_KEYWORDS: usize = 1000;

pub fn keywords(src: &impl Reader, tenant: &str) -> Result<Vec<Keyword>, StoreError> {
    Ok(src
        .scan_page::<Keyword>(KEYWORDS, &prefix(&[tenant]), None, MAX_KEYWORDS, false)?
        .into_iter()
        .map(|(_, k)| k)
        .collect())
}

/// Register (or re-assign) `keyword` to `account`.
pub fn put_keyword(
    tx: &mut Tx,
    tenant: &str,
    keyword: &str,
    account: &str,
    reply: Option<String>,
) -> Result<Keyword, GatewayError> {
    let k = normalize_keyword(keyword).ok_or_else(|| {
        GatewayError::Invalid("a keyword is 1 to 32 letters, digits, - or _".into())
    })?;
    let s = settings(tx, tenant)?;
    if s.stop_words
        .iter()
        .chain(&s.start_words)
        .chain(&s.help_words)
        .any(|w| *w == k)
    {
        return Err(GatewayError::Reserved(format!(
            "`{k}` is one of the tenant's STOP / START / HELP words"
        )));
    }
    let owner = accounts::get(tx, tenant, account)?
        .ok_or_else(|| GatewayError::NoAccount(account.into()))?;
    if tx.get_raw(KEYWORDS, &key(&[tenant, &k]))?.is_none()
        && !engage_store::below_cap(tx, KEYWORDS, &prefix(&[tenant]), MAX_KEYWORDS)?
    {
        return Err(GatewayError::Invalid(format!(
            "a tenant keeps at most {MAX_KEYWORDS} keywords; remove one first"
        )));
    }
    if let Some(r) = &reply
        && (r.trim().is_empty() || r.chars().count() > 1600)
    {
        return Err(GatewayError::Invalid(
            "a reply is 1 to 1600 characters".into(),
        ));
    }
    let kw = Keyword {
        keyword: k.clone(),
        account: owner.username,
        reply,
    };
    tx.put(KEYWORDS, &key(&[tenant, &k]), &kw)?;
    Ok(kw)
}

pub fn remove_keyword(tx: &mut Tx, tenant: &str, keyword: &str) -> Result<(), GatewayError> {
    let k = normalize_keyword(keyword).unwrap_or_default();
    if tx.remove(KEYWORDS, &key(&[tenant, &k]))? {
        Ok(())
    } else {
        Err(GatewayError::NotFound(format!("keyword `{k}`")))
    }
}

/// A message to send once the inbound SMS is recorded.
struct Reply {
    to: String,
    body: String,
    account: Option<String>,
}

/// Put `raw` on the tenant's opt-out list for `account` (what playSMS
/// calls its stop list): read as the account's own sends read numbers (its
/// `replace_zero` and local length). True if it was not on the list.
pub async fn stop_number(
    g: &Gateway,
    tenant: &str,
    account: &accounts::Account,
    raw: &str,
    now: i64,
) -> Result<bool, GatewayError> {
    let prefix = if account.replace_zero.is_empty() {
        settings(&g.store.read()?, tenant)?.default_replace_zero
    } else {
        account.replace_zero.clone()
    };
    let local = numbers::localize(&numbers::sanitize(raw), &prefix, account.local_length);
    let number = numbers::to_e164(&local).ok_or_else(|| {
        GatewayError::Invalid(format!(
            "`{}` is not a phone number",
            raw.chars().take(32).collect::<String>()
        ))
    })?;
    let (t, source) = (tenant.to_owned(), format!("stoplist:{}", account.username));
    Ok(g.store
        .write(move |tx| optouts::add(tx, &t, &number, &source, now))
        .await?)
}

/// Record an inbound SMS and act on it. The record, the opt-out change and
/// the inbox entry are one write (guarded by `idem`: a provider's retry of
/// the same message is answered, not processed again); answers (HELP, a keyword's reply) and a
/// forward to the owner's mobile are sent after it, as transactional
/// messages.
pub async fn receive(
    g: &Gateway,
    tenant: &str,
    sms: Inbound,
    idem: Option<Call>,
    now: i64,
    rid: &str,
) -> Result<Guarded<Incoming>, GatewayError> {
    let sender = numbers::sanitize(&sms.from);
    if sender.trim_start_matches('+').is_empty() {
        return Err(GatewayError::Invalid(format!(
            "`{}` is not a sender number",
            sms.from
        )));
    }
    let text = sms.text.trim().to_owned();
    if text.is_empty() {
        return Err(GatewayError::Invalid("the message is empty".into()));
    }
    let src = numbers::to_e164(&sender).unwrap_or(sender);
    let dst = numbers::sanitize(&sms.to);
    let (first, rest) = match text.split_once(char::is_whitespace) {
        Some((f, r)) => (f.to_uppercase(), r.trim().to_owned()),
        None => (text.to_uppercase(), String::new()),
    };
    let (t, smsc, source) = (tenant.to_owned(), sms.smsc.clone(), sms.source.clone());
    let (guarded, replies) = g
        .store
        .write(move |tx| {
            let mut replies = Vec::new();
            let guarded = idempotency::guarded(tx, &t, idem.as_ref(), now, 201, |tx| {
                let s = settings(tx, &t)?;
                let reply =
                    |replies: &mut Vec<Reply>, body: &Option<String>, account: Option<String>| {
                        if let Some(b) = body {
                            replies.push(Reply {
                                to: src.clone(),
                                body: b.clone(),
                                account,
                            });
                        }
                    };
                let (handling, owner, keyword, msg) = if s.stop_words.contains(&first) {
                    optouts::add(tx, &t, &src, &format!("sms:{first}"), now)?;
                    reply(&mut replies, &s.stop_reply, None);
                    (Handling::OptOut, None, first.clone(), rest.clone())
                } else if s.start_words.contains(&first) {
                    optouts::remove(tx, &t, &src)?;
                    reply(&mut replies, &s.start_reply, None);
                    (Handling::OptIn, None, first.clone(), rest.clone())
                } else if s.help_words.contains(&first) {
                    reply(&mut replies, &s.help_reply, None);
                    (Handling::Help, None, first.clone(), rest.clone())
                } else if let Some(kw) = tx.get::<Keyword>(KEYWORDS, &key(&[&t, &first]))? {
                    let owner = accounts::get(tx, &t, &kw.account)?;
                    let credit = owner.as_ref().map(|o| o.credit_account());
                    reply(&mut replies, &kw.reply, credit.clone());
                    if let Some(o) = owner
                        .as_ref()
                        .filter(|o| o.fwd_to_mobile && !o.mobile.is_empty())
                    {
                        let to = numbers::localize(&o.mobile, &o.replace_zero, o.local_length);
                        if let Some(to) = numbers::to_e164(&to) {
                            replies.push(Reply {
                                to,
                                body: format!("{src}: {text}"),
                                account: credit,
                            });
                        }
                    }
                    (
                        Handling::Keyword,
                        Some(kw.account),
                        first.clone(),
                        rest.clone(),
                    )
                } else {
                    (Handling::Unhandled, None, String::new(), text.clone())
                };
                let incoming = Incoming {
                    id: tx.next_seq(&t, "gateway_in")?,
                    src: src.clone(),
                    dst: dst.clone(),
                    keyword,
                    msg,
                    handling,
                    owner: owner.clone(),
                    source: source.clone(),
                    smsc: smsc.clone(),
                    at_ms: now,
                };
                tx.put(INCOMING, &key(&[&t, &seq_part(incoming.id)]), &incoming)?;
                if let Some(o) = owner.and_then(|o| accounts::get(tx, &t, &o).transpose()) {
                    let o = o?;
                    if o.fwd_to_inbox && !o.banned {
                        let entry = InboxEntry {
                            id: tx.next_seq(&t, "gateway_inbox")?,
                            src: src.clone(),
                            dst: dst.clone(),
                            msg: incoming.msg.clone(),
                            incoming_id: incoming.id,
                            at_ms: now,
                        };
                        tx.put(INBOX, &key(&[&t, &o.username, &seq_part(entry.id)]), &entry)?;
                    }
                }
                Ok::<_, GatewayError>(incoming)
            })?;
            Ok::<_, GatewayError>((guarded, replies))
        })
        .await?;
    for r in replies {
        let req = SendRequest {
            to: vec![r.to],
            body: Some(r.body),
            kind: Kind::Transactional,
            account: r.account,
            ..SendRequest::default()
        };
        if let Err(e) = g.messaging.send(tenant, req, None, now, rid).await {
            tracing::warn!(tenant, error = %e, "answering an inbound SMS");
        }
    }
    if let Guarded::Fresh(i) = &guarded {
        tracing::info!(tenant, id = i.id, handling = ?i.handling, "inbound SMS");
    }
    Ok(guarded)
}

/// Up to `limit` inbound SMS that `keep` accepts, newest first, with ids
/// above `after`.
pub fn incoming(
    src: &impl Reader,
    tenant: &str,
    after: u64,
    limit: usize,
    keep: impl Fn(&Incoming) -> bool,
) -> Result<Vec<Incoming>, StoreError> {
    src.newest_matching(INCOMING, &prefix(&[tenant]), None, limit, |i: &Incoming| {
        i.id > after && keep(i)
    })
}

/// Up to `limit` entries of `user`'s inbox that `keep` accepts, newest first.
pub fn inbox(
    src: &impl Reader,
    tenant: &str,
    user: &str,
    after: u64,
    limit: usize,
    keep: impl Fn(&InboxEntry) -> bool,
) -> Result<Vec<InboxEntry>, StoreError> {
    src.newest_matching(
        INBOX,
        &prefix(&[tenant, user]),
        None,
        limit,
        |e: &InboxEntry| e.id > after && keep(e),
    )
}

/// An internal message from account `from` into account `to`'s inbox (a
/// playSMS `@username` destination): no SMS is sent. `None` when `to`
/// cannot receive one (no such account, or banned).
pub fn deliver_im(
    tx: &mut Tx,
    tenant: &str,
    from: &str,
    to: &str,
    msg: &str,
    now: i64,
) -> Result<Option<InboxEntry>, StoreError> {
    let Some(target) = accounts::get(tx, tenant, to)? else {
        return Ok(None);
    };
    if target.banned {
        return Ok(None);
    }
    let entry = InboxEntry {
        id: tx.next_seq(tenant, "gateway_inbox")?,
        src: format!("@{from}"),
        dst: format!("@{}", target.username),
        msg: msg.to_owned(),
        incoming_id: 0,
        at_ms: now,
    };
    tx.put(
        INBOX,
        &key(&[tenant, &target.username, &seq_part(entry.id)]),
        &entry,
    )?;
    Ok(Some(entry))
}

/// The newest inbox id of `user` (0: none).
pub fn last_inbox_id(src: &impl Reader, tenant: &str, user: &str) -> Result<u64, StoreError> {
    Ok(inbox(src, tenant, user, 0, 1, |_| true)?
        .first()
        .map(|e| e.id)
        .unwrap_or(0))
}
