//! Each gateway account's phonebook: contacts (name, mobile, e-mail) and
//! groups with a code, so a send can address `#CODE`.

use serde::{Deserialize, Serialize};

use super::GatewayError;
use engage_store::{Reader, StoreError, Table, Tx, key, prefix, seq_part};

/// (tenant, username, contact id) → [`Contact`].
const CONTACTS: Table = Table::new("gateway_contacts");
/// (tenant, username, group id) → [`Group`].
const GROUPS: Table = Table::new("gateway_groups");

/// A phonebook contact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Contact {
    pub id: u64,
    pub name: String,
    pub mobile: String,
    #[serde(default)]
    pub email: String,
    /// Ids of the groups it belongs to.
    #[serde(default)]
    pub groups: Vec<u64>,
}

/// A phonebook group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[schema(as = ContactGroup)]
pub struct Group {
    pub id: u64,
    pub name: String,
    /// Upper case; what `#CODE` names.
    pub code: String,
}

/// A new contact; `groups` are group codes.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    /// 1 to 100 characters, no control characters.
    #[schema(pattern = "^\\s*[^\\x00-\\x1f\\x7f-\\x9f\\s][^\\x00-\\x1f\\x7f-\\x9f]{0,99}\\s*$")]
    pub name: String,
    /// At least 3 digits (its digits and `+` are kept).
    #[schema(pattern = "([0-9][^0-9]*){3}")]
    pub mobile: String,
    /// An e-mail address, or empty.
    #[serde(default)]
    #[schema(
        max_length = 254,
        pattern = "^\\s*$|^\\s*[^@\\s\\x00-\\x1f\\x7f-\\x9f]+@[^.\\s\\x00-\\x1f\\x7f-\\x9f][^\\s\\x00-\\x1f\\x7f-\\x9f]*\\.[^\\s\\x00-\\x1f\\x7f-\\x9f]*[^.\\s\\x00-\\x1f\\x7f-\\x9f]\\s*$"
    )]
    pub email: String,
    /// Codes of the account's groups.
    #[serde(default)]
    #[schema(inline, value_type = Vec<GroupCode>)]
    pub groups: Vec<String>,
}

/// A group code as a client writes one (kept in upper case).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, pattern = "^\\s*[A-Za-z0-9_-]{1,32}\\s*$")]
#[allow(dead_code)]
struct GroupCode(String);

/// A new group.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// 1 to 100 characters, no control characters.
    #[schema(pattern = "^\\s*[^\\x00-\\x1f\\x7f-\\x9f\\s][^\\x00-\\x1f\\x7f-\\x9f]{0,99}\\s*$")]
    pub name: String,
    #[schema(value_type = GroupCode)]
    pub code: String,
}

fn invalid(m: impl Into<String>) -> GatewayError {
    GatewayError::Invalid(m.into())
}

/// A trimmed name of 1 to 100 characters without control characters.
fn checked_name(raw: &str, what: &str) -> Result<String, GatewayError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(invalid(format!("a {what} name is 1 to 100 characters")));
    }
    Ok(name.to_owned())
}

fn normalize_code(code: &str) -> Option<String> {
    let c = code.trim().to_ascii_uppercase();
    let ok = (1..=32).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(c)
}

/// The most groups one account keeps.
pub const MAX_GROUPS: usize = 1000;
/// The most contacts one account keeps.
pub const MAX_CONTACTS: usize = 10_000;

/// The account's groups, by id.
pub fn groups(src: &impl Reader, tenant: &str, user: &str) -> Result<Vec<Group>, StoreError> {
    Ok(src
        .scan_page::<Group>(GROUPS, &prefix(&[tenant, user]), None, MAX_GROUPS, false)?
        .into_iter()
        .map(|(_, g)| g)
        .collect())
}

/// The account's contacts, by id.
pub fn contacts(src: &impl Reader, tenant: &str, user: &str) -> Result<Vec<Contact>, StoreError> {
    Ok(src
        .scan_page::<Contact>(
            CONTACTS,
            &prefix(&[tenant, user]),
            None,
            MAX_CONTACTS,
            false,
        )?
        .into_iter()
        .map(|(_, c)| c)
        .collect())
}

/// The group with `code`, if any.
pub fn group_by_code(
    src: &impl Reader,
    tenant: &str,
    user: &str,
    code: &str,
) -> Result<Option<Group>, StoreError> {
    let Some(code) = normalize_code(code) else {
        return Ok(None);
    };
    Ok(groups(src, tenant, user)?
        .into_iter()
        .find(|g| g.code == code))
}

/// The mobiles of group `code`'s members (empty when there is no such group).
pub fn members(
    src: &impl Reader,
    tenant: &str,
    user: &str,
    code: &str,
) -> Result<Vec<String>, StoreError> {
    let Some(g) = group_by_code(src, tenant, user, code)? else {
        return Ok(Vec::new());
    };
    Ok(contacts(src, tenant, user)?
        .into_iter()
        .filter(|c| c.groups.contains(&g.id))
        .map(|c| c.mobile)
        .collect())
}

pub fn add_group(
    tx: &mut Tx,
    tenant: &str,
    user: &str,
    n: NewGroup,
) -> Result<Group, GatewayError> {
    let code = normalize_code(&n.code)
        .ok_or_else(|| invalid("a group code is 1 to 32 letters, digits, - or _"))?;
    let name = checked_name(&n.name, "group")?;
    if group_by_code(tx, tenant, user, &code)?.is_some() {
        return Err(GatewayError::Exists(format!("group #{code}")));
    }
    if !engage_store::below_cap(tx, GROUPS, &prefix(&[tenant, user]), MAX_GROUPS)? {
        return Err(invalid(format!(
            "an account keeps at most {MAX_GROUPS} groups; remove one first"
        )));
    }
    let id = tx.next_seq(tenant, "gateway_group")?;
    let g = Group { id, name, code };
    tx.put(GROUPS, &key(&[tenant, user, &seq_part(id)]), &g)?;
    Ok(g)
}

pub fn remove_group(
    tx: &mut Tx,
    tenant: &str,
    user: &str,
    code: &str,
) -> Result<Group, GatewayError> {
    let g = group_by_code(tx, tenant, user, code)?
        .ok_or_else(|| GatewayError::NotFound(format!("group #{code}")))?;
    tx.remove(GROUPS, &key(&[tenant, user, &seq_part(g.id)]))?;
    for mut c in contacts(tx, tenant, user)? {
        if c.groups.contains(&g.id) {
            c.groups.retain(|id| *id != g.id);
            tx.put(CONTACTS, &key(&[tenant, user, &seq_part(c.id)]), &c)?;
        }
    }
    Ok(g)
}

pub fn add_contact(
    tx: &mut Tx,
    tenant: &str,
    user: &str,
    n: NewContact,
) -> Result<Contact, GatewayError> {
    let name = checked_name(&n.name, "contact")?;
    let mobile = super::numbers::sanitize(&n.mobile);
    if mobile.trim_start_matches('+').len() < 3 {
        return Err(invalid(format!("`{}` is not a mobile number", n.mobile)));
    }
    let email = n.email.trim().to_owned();
    if !email.is_empty() {
        crate::address::check_email(&email)
            .map_err(|_| invalid(format!("`{email}` is not an e-mail address")))?;
    }
    let mut groups = Vec::new();
    for code in &n.groups {
        let g = group_by_code(tx, tenant, user, code)?
            .ok_or_else(|| GatewayError::NotFound(format!("group #{code}")))?;
        if !groups.contains(&g.id) {
            groups.push(g.id);
        }
    }
    if !engage_store::below_cap(tx, CONTACTS, &prefix(&[tenant, user]), MAX_CONTACTS)? {
        return Err(invalid(format!(
            "an account keeps at most {MAX_CONTACTS} contacts; remove one first"
        )));
    }
    let id = tx.next_seq(tenant, "gateway_contact")?;
    let c = Contact {
        id,
        name,
        mobile,
        email,
        groups,
    };
    tx.put(CONTACTS, &key(&[tenant, user, &seq_part(id)]), &c)?;
    Ok(c)
}

pub fn remove_contact(tx: &mut Tx, tenant: &str, user: &str, id: u64) -> Result<(), GatewayError> {
    if tx.remove(CONTACTS, &key(&[tenant, user, &seq_part(id)]))? {
        Ok(())
    } else {
        Err(GatewayError::NotFound(format!("contact {id}")))
    }
}

/// One search hit: a contact, once per group it is in (once with no group).
#[derive(Debug, Clone, Serialize)]
pub struct ContactHit {
    pub contact: Contact,
    pub group: Option<Group>,
}

/// Contacts whose name, mobile or e-mail contains `kwd` (any case), at
/// most `limit` hits.
pub fn search(
    src: &impl Reader,
    tenant: &str,
    user: &str,
    kwd: &str,
    limit: usize,
) -> Result<Vec<ContactHit>, StoreError> {
    let k = kwd.trim().to_lowercase();
    let groups = groups(src, tenant, user)?;
    let mut out = Vec::new();
    for c in contacts(src, tenant, user)? {
        let hit = [&c.name, &c.mobile, &c.email]
            .iter()
            .any(|f| f.to_lowercase().contains(&k));
        if !hit {
            continue;
        }
        let mine: Vec<&Group> = groups.iter().filter(|g| c.groups.contains(&g.id)).collect();
        if mine.is_empty() {
            out.push(ContactHit {
                contact: c.clone(),
                group: None,
            });
        }
        for g in mine {
            out.push(ContactHit {
                contact: c.clone(),
                group: Some(g.clone()),
            });
        }
        if out.len() >= limit {
            break;
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// Groups whose name or code contains `kwd` (any case), at most `limit`.
pub fn search_groups(
    src: &impl Reader,
    tenant: &str,
    user: &str,
    kwd: &str,
    limit: usize,
) -> Result<Vec<Group>, StoreError> {
    let k = kwd.trim().to_lowercase();
    Ok(groups(src, tenant, user)?
        .into_iter()
        .filter(|g| g.name.to_lowercase().contains(&k) || g.code.to_lowercase().contains(&k))
        .take(limit)
        .collect())
}

/// Remove the account's whole phonebook (the account is going away).
pub fn remove_all(tx: &mut Tx, tenant: &str, user: &str) -> Result<(), StoreError> {
    for c in contacts(tx, tenant, user)? {
        tx.remove(CONTACTS, &key(&[tenant, user, &seq_part(c.id)]))?;
    }
    for g in groups(tx, tenant, user)? {
        tx.remove(GROUPS, &key(&[tenant, user, &seq_part(g.id)]))?;
    }
    Ok(())
}
