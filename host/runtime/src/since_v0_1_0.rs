//! The boundary of `engage:plugin@0.1.0`: its generated types to the
//! host's [`crate::io`] types and back. Nothing else in the host names a
//! generated type of a world's exports.

use crate::bindings::gift::exports::engage::plugin::gift_hook as gift;
use crate::bindings::routing::exports::engage::plugin::router;
use crate::bindings::rules::engage::plugin::types;
use crate::bindings::rules::exports::engage::plugin::rule_engine as rules;
use crate::io;

fn params_in(list: &[io::Param]) -> Vec<types::Param> {
    list.iter()
        .map(|p| types::Param {
            name: p.name.clone(),
            value: p.value.clone(),
        })
        .collect()
}

fn params_out(list: Vec<types::Param>) -> Vec<io::Param> {
    list.into_iter()
        .map(|p| io::Param {
            name: p.name,
            value: p.value,
        })
        .collect()
}

pub fn error(e: types::PluginError) -> io::PluginError {
    io::PluginError {
        code: e.code,
        message: e.message,
    }
}

pub fn action(a: &io::Action) -> rules::Action {
    rules::Action {
        player: a.player.clone(),
        name: a.name.clone(),
        params: params_in(&a.params),
        url: a.url.clone(),
        time_ms: a.time_ms,
    }
}

pub fn outcome(o: rules::Outcome) -> io::Outcome {
    io::Outcome {
        grants: o
            .grants
            .into_iter()
            .map(|g| io::Grant {
                currency: g.currency,
                amount: g.amount,
                reason: g.reason,
            })
            .collect(),
        badges: o.badges,
        messages: o
            .messages
            .into_iter()
            .map(|m| io::Message {
                channel: m.channel,
                to: m.to,
                template: m.template,
                vars: params_out(m.vars),
            })
            .collect(),
        events: o
            .events
            .into_iter()
            .map(|e| io::CustomEvent {
                name: e.name,
                data: e.data,
            })
            .collect(),
        trace: o
            .trace
            .into_iter()
            .map(|t| io::TraceEntry {
                rule: t.rule,
                matched: t.matched,
                reason: t.reason,
            })
            .collect(),
    }
}

pub fn gift_request(r: &io::GiftRequest) -> gift::GiftRequest {
    gift::GiftRequest {
        id: r.id.clone(),
        sender: r.sender.clone(),
        recipients: r.recipients.clone(),
        expires_at_ms: r.expires_at_ms,
        attributes: params_in(&r.attributes),
    }
}

pub fn gift_reply(r: &io::GiftReply) -> gift::GiftReply {
    gift::GiftReply {
        request_id: r.request_id.clone(),
        player: r.player.clone(),
        requester: r.requester.clone(),
        accept: r.accept,
        attributes: params_in(&r.attributes),
    }
}

pub fn verdict(v: gift::Verdict) -> io::Verdict {
    match v {
        gift::Verdict::Allow => io::Verdict::Allow,
        gift::Verdict::Amend(list) => io::Verdict::Amend(params_out(list)),
        gift::Verdict::Reject(r) => io::Verdict::Reject(io::Rejection {
            code: r.code,
            code_str: r.code_str,
            message: r.message,
        }),
    }
}

pub fn vars(list: &[io::Param]) -> Vec<types::Param> {
    params_in(list)
}

pub fn outgoing(m: &io::Outgoing) -> router::Outgoing {
    router::Outgoing {
        id: m.id.clone(),
        to: m.to.clone(),
        channel: m.channel.clone(),
        sender: m.sender.clone(),
        body: m.body.clone(),
        kind: match m.kind {
            io::MessageKind::Transactional => router::MessageKind::Transactional,
            io::MessageKind::Marketing => router::MessageKind::Marketing,
        },
        reference: m.reference.clone(),
        metadata: params_in(&m.metadata),
    }
}

pub fn attempts(list: Vec<router::Attempt>) -> Vec<io::Attempt> {
    list.into_iter()
        .map(|a| io::Attempt {
            channel: a.channel,
            provider: a.provider,
            sender: a.sender,
            body: a.body,
        })
        .collect()
}
