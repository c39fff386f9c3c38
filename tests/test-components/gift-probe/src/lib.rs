//! Gift hooks for tests. The post-request hook counts in the key-value
//! store; the pre-request hook adds that count to the request's attributes
//! as `posts_seen`, so a test can see which post hooks ran. A request whose
//! `custom:mode` attribute is `trap`, `loop` or `grow` makes the pre hook
//! misbehave that way.

use engage_plugin_sdk::gift::{GiftReply, GiftRequest, Verdict};
use engage_plugin_sdk::types::Param;
use engage_plugin_sdk::{PluginError, host};

fn posts_seen() -> i64 {
    host::kv_get("posts")
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(i64::from_le_bytes)
        .unwrap_or(0)
}

struct Probe;

impl engage_plugin_sdk::gift::Guest for Probe {
    fn pre_request(request: GiftRequest) -> Result<Verdict, PluginError> {
        let mode = request
            .attributes
            .iter()
            .find(|p| p.name == "mode")
            .map(|p| p.value.clone());
        match mode.as_deref() {
            Some("trap") => std::process::abort(),
            Some("loop") => loop {
                core::hint::black_box(0u64);
            },
            Some("grow") => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(vec![1u8; 1 << 20]);
                }
            }
            _ => {}
        }
        let mut attributes = request.attributes;
        attributes.push(Param {
            name: "posts_seen".into(),
            value: posts_seen().to_string(),
        });
        Ok(Verdict::Amend(attributes))
    }

    fn post_request(_request: GiftRequest) -> Result<(), PluginError> {
        host::kv_increment("posts", 1, None);
        Ok(())
    }

    fn pre_reply(_reply: GiftReply) -> Result<Verdict, PluginError> {
        Ok(Verdict::Allow)
    }

    fn post_reply(_reply: GiftReply) -> Result<(), PluginError> {
        host::kv_increment("replies", 1, None);
        Ok(())
    }
}

engage_plugin_sdk::export_gift_hooks!(Probe);
