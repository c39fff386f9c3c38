//! What a plugin is given and what it answers, as the host keeps them: the
//! domain crates build and read these, never the types `bindgen!`
//! generates. Each WIT version converts to and from them at one boundary
//! (`since_v0_1_0`), so a new WIT version changes that boundary, not the
//! domain (as Zed's extension host does).
//!
//! They serialise exactly as the `engage:plugin@0.1.0` records did, so
//! stored records and run logs read the same.

use serde::{Deserialize, Serialize};

/// A name and a value (an action's parameter, a template variable, a gift
/// attribute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Param {
    pub name: String,
    pub value: String,
}

/// An error a plugin returns on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginError {
    pub code: String,
    pub message: String,
}

/// An action a player did, for the rules to judge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Action {
    pub player: String,
    pub name: String,
    pub params: Vec<Param>,
    pub url: Option<String>,
    pub time_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub currency: String,
    pub amount: i64,
    pub reason: String,
}

/// A message the rules ask to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub channel: String,
    pub to: Option<String>,
    pub template: String,
    pub vars: Vec<Param>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomEvent {
    pub name: String,
    pub data: String,
}

/// Why a rule matched or did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TraceEntry {
    pub rule: String,
    pub matched: bool,
    pub reason: String,
}

/// What the rules decided about an action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub grants: Vec<Grant>,
    pub badges: Vec<String>,
    pub messages: Vec<Message>,
    pub events: Vec<CustomEvent>,
    pub trace: Vec<TraceEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = HookGiftRequest)]
pub struct GiftRequest {
    pub id: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub expires_at_ms: i64,
    pub attributes: Vec<Param>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GiftReply {
    pub request_id: String,
    pub player: String,
    pub requester: String,
    pub accept: bool,
    pub attributes: Vec<Param>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub code: i32,
    pub code_str: String,
    pub message: String,
}

/// A gift hook's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Allow,
    Amend(Vec<Param>),
    Reject(Rejection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum MessageKind {
    Transactional,
    Marketing,
}

/// A message to route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Outgoing {
    pub id: String,
    pub to: String,
    /// `sms`, `viber` or `email`.
    #[schema(schema_with = channel)]
    pub channel: String,
    pub sender: Option<String>,
    pub body: String,
    pub kind: MessageKind,
    pub reference: Option<String>,
    pub metadata: Vec<Param>,
}

/// The channels a message goes out on, in an API document.
fn channel() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(CHANNELS))
        .build()
}

/// The channels Engage sends on.
pub const CHANNELS: [&str; 3] = ["sms", "viber", "email"];

/// One way to send a message, in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub channel: String,
    pub provider: String,
    pub sender: Option<String>,
    pub body: Option<String>,
}
