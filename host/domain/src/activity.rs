//! What a tenant's program did lately: actions, redemptions and messages
//! per time bucket over the last hour or day, and the recent messages by
//! status. Read from the records themselves (no counters are kept on the
//! write path), so each kind is walked newest first and at most
//! [`MAX_PER_KIND`] records are read: a busy tenant's answer says it was
//! cut short (`capped`) instead of costing a scan of its whole history.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use engage_store::{Reader, StoreError};

/// The most records of one kind one answer reads.
pub const MAX_PER_KIND: usize = 20_000;

/// The span an answer covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    /// The last hour, in 5-minute buckets.
    Hour,
    /// The last 24 hours, in 1-hour buckets.
    Day,
}

impl Window {
    fn span(self) -> (i64, i64) {
        match self {
            Window::Hour => (3_600_000, 300_000),
            Window::Day => (86_400_000, 3_600_000),
        }
    }
}

/// One bucket's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Bucket {
    /// Where the bucket starts, in ms since the epoch.
    pub start_ms: i64,
    pub actions: u64,
    pub redemptions: u64,
    pub messages: u64,
}

/// A tenant's recent activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Activity {
    pub window: Window,
    pub bucket_ms: i64,
    /// Oldest first; the last one ends now.
    pub buckets: Vec<Bucket>,
    /// The window's messages by their current status.
    pub messages_by_status: BTreeMap<String, u64>,
    /// True when a kind had more records in the window than one answer
    /// reads ([`MAX_PER_KIND`]): its counts are then lower bounds.
    pub capped: bool,
}

/// `tenant`'s activity over `window` ending at `now_ms`.
pub fn activity(
    src: &impl Reader,
    tenant: &str,
    window: Window,
    now_ms: i64,
) -> Result<Activity, StoreError> {
    let (span, step) = window.span();
    let n = (span / step) as usize;
    // Buckets end at the next step boundary after now, so they line up on
    // the clock (…:05, …:10) and the newest holds now.
    let end = (now_ms / step + 1) * step;
    let start = end - span;
    let mut buckets: Vec<Bucket> = (0..n)
        .map(|i| Bucket {
            start_ms: start + i as i64 * step,
            ..Bucket::default()
        })
        .collect();
    let slot = |t: i64| -> Option<usize> {
        (t >= start && t < end).then(|| ((t - start) / step) as usize)
    };
    let (actions, capped_a) = crate::actions::times_since(src, tenant, start, MAX_PER_KIND)?;
    for t in actions {
        if let Some(b) = slot(t).and_then(|i| buckets.get_mut(i)) {
            b.actions += 1;
        }
    }
    let (redemptions, capped_r) =
        crate::goods::redemption_times_since(src, tenant, start, MAX_PER_KIND)?;
    for t in redemptions {
        if let Some(b) = slot(t).and_then(|i| buckets.get_mut(i)) {
            b.redemptions += 1;
        }
    }
    let (messages, capped_m) = engage_messaging::newest_since(src, tenant, start, MAX_PER_KIND)?;
    let mut messages_by_status = BTreeMap::new();
    for m in messages {
        if let Some(b) = slot(m.created_at_ms).and_then(|i| buckets.get_mut(i)) {
            b.messages += 1;
        }
        *messages_by_status
            .entry(m.status.as_str().to_owned())
            .or_insert(0) += 1;
    }
    Ok(Activity {
        window,
        bucket_ms: step,
        buckets,
        messages_by_status,
        capped: capped_a || capped_r || capped_m,
    })
}
