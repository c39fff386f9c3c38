//! The boundary between one WIT version's generated types and the host's
//! own ([`crate::io`], [`crate::runtime::Input`], [`crate::runtime::Output`]).
//!
//! Every published version has the same four worlds, so one macro writes
//! each version's conversions, its typed `InstancePre` per world and the
//! dispatch of an [`Input`](crate::runtime::Input) to the right export.
//! A version's boundary module (`since_v0_1_0`, `since_v0_2_0`) invokes it
//! and adds what is new in that version; nothing else in the host names a
//! generated type of a world's exports.

macro_rules! boundary {
    ($v:ident) => {
        use crate::Point;
        use crate::bindings::$v::gift::exports::engage::plugin::gift_hook as gift;
        use crate::bindings::$v::routing::exports::engage::plugin::router;
        use crate::bindings::$v::rules::exports::engage::plugin::rule_engine as rules;
        use crate::bindings::$v::types;
        use crate::io;
        use crate::runtime::{GuestResult, Input, Output};
        use crate::sandbox::CallState;
        use wasmtime::Store;

        /// A typed `InstancePre` of this version, per world.
        pub enum Pre {
            Rules(crate::bindings::$v::rules::RulesPre<CallState>),
            Gift(crate::bindings::$v::gift::GiftHooksPre<CallState>),
            Template(crate::bindings::$v::templating::TemplatingPre<CallState>),
            Route(crate::bindings::$v::routing::RoutingPre<CallState>),
        }

        /// An instance of this version's world.
        pub enum Instance {
            Rules(crate::bindings::$v::rules::Rules),
            Gift(crate::bindings::$v::gift::GiftHooks),
            Template(crate::bindings::$v::templating::Templating),
            Route(crate::bindings::$v::routing::Routing),
        }

        impl Pre {
            /// Check that the component linked by `pre` implements `point`'s world.
            pub fn new(
                point: Point,
                pre: wasmtime::component::InstancePre<CallState>,
            ) -> wasmtime::Result<Pre> {
                use crate::bindings::$v::{gift as g, routing as r, rules as ru, templating as t};
                Ok(match point {
                    Point::Rules => Pre::Rules(ru::RulesPre::new(pre)?),
                    Point::Gift => Pre::Gift(g::GiftHooksPre::new(pre)?),
                    Point::Template => Pre::Template(t::TemplatingPre::new(pre)?),
                    Point::Route => Pre::Route(r::RoutingPre::new(pre)?),
                })
            }

            pub fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Instance> {
                Ok(match self {
                    Pre::Rules(p) => Instance::Rules(p.instantiate(store)?),
                    Pre::Gift(p) => Instance::Gift(p.instantiate(store)?),
                    Pre::Template(p) => Instance::Template(p.instantiate(store)?),
                    Pre::Route(p) => Instance::Route(p.instantiate(store)?),
                })
            }
        }

        /// Call `input` on the export of `instance`'s world it belongs to.
        pub fn invoke(
            instance: &Instance,
            store: &mut Store<CallState>,
            input: &Input,
        ) -> GuestResult {
            match (instance, input) {
                (Instance::Rules(r), Input::Evaluate { action: a }) => Ok(r
                    .engage_plugin_rule_engine()
                    .call_evaluate(store, &action(a))?
                    .map(|o| Output::Outcome(outcome(o)))
                    .map_err(error)),
                (Instance::Gift(g), Input::PreRequest { request }) => Ok(g
                    .engage_plugin_gift_hook()
                    .call_pre_request(store, &gift_request(request))?
                    .map(|v| Output::Verdict(verdict(v)))
                    .map_err(error)),
                (Instance::Gift(g), Input::PostRequest { request }) => Ok(g
                    .engage_plugin_gift_hook()
                    .call_post_request(store, &gift_request(request))?
                    .map(|()| Output::Done)
                    .map_err(error)),
                (Instance::Gift(g), Input::PreReply { reply }) => Ok(g
                    .engage_plugin_gift_hook()
                    .call_pre_reply(store, &gift_reply(reply))?
                    .map(|v| Output::Verdict(verdict(v)))
                    .map_err(error)),
                (Instance::Gift(g), Input::PostReply { reply }) => Ok(g
                    .engage_plugin_gift_hook()
                    .call_post_reply(store, &gift_reply(reply))?
                    .map(|()| Output::Done)
                    .map_err(error)),
                (Instance::Template(t), Input::Render { template, vars: v }) => Ok(t
                    .engage_plugin_template()
                    .call_render(store, template, &vars(v))?
                    .map(Output::Text)
                    .map_err(error)),
                (Instance::Route(r), Input::Route { message }) => Ok(r
                    .engage_plugin_router()
                    .call_route(store, &outgoing(message))?
                    .map(|list| Output::Attempts(attempts(list)))
                    .map_err(error)),
                _ => Err(wasmtime::Error::msg(
                    "the call does not belong to the plugin's world",
                )),
            }
        }

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
    };
}

pub(crate) use boundary;
