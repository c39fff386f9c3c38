//! What one campaign run costs at 100,000 members: players with phones
//! subscribed to TEXT marketing, a send-now campaign through the template
//! and route bindings, the console provider delivering. Reports the time
//! to expand the audience and accept every message, the time until all
//! are delivered, and the store's growth per member.
//!
//! Run: `cargo bench -p engage --bench campaign_run`
//! (`CAMPAIGN_MEMBERS=10000` for a smaller run).

use std::time::{Duration, Instant};

use engage::audiences::subscriptions::{self, Person, Source, SubType};
use engage::campaigns::{self, Spec, Trigger};
use engage::config::ServerConfig;
use engage::messaging::Kind;
use engage::players::{self, Profile};

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let members: usize = std::env::var("CAMPAIGN_MEMBERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let data = std::env::temp_dir().join(format!("engage-campaign-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let config = ServerConfig {
        data_dir: data.clone(),
        listen: "127.0.0.1:0".parse()?,
        ..ServerConfig::default()
    };
    let running = engage::server::start(&config).await?;
    let state = running.state.clone();
    let tenant = "demo";
    let now = engage::ids::now_ms();

    let started = Instant::now();
    state
        .store
        .write(move |tx| {
            subscriptions::put_source(
                tx,
                tenant,
                Source {
                    id: "web".into(),
                    name: "Web".into(),
                    types: vec![SubType::Marketing],
                },
            )
            .map(|_| ())
        })
        .await?;
    for chunk in (0..members).collect::<Vec<_>>().chunks(1000) {
        let chunk = chunk.to_vec();
        state
            .store
            .write(move |tx| {
                for i in &chunk {
                    let phone = format!("+1415{:07}", i);
                    let profile = Profile {
                        phone: Some(phone.clone()),
                        first_name: Some(format!("Member{i}")),
                        ..Profile::default()
                    };
                    players::register(tx, tenant, &format!("m{i:07}"), profile, now)
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    let who = Person {
                        phone: Some(phone),
                        email: None,
                    };
                    subscriptions::subscribe(tx, tenant, &who, "web", now)
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                Ok::<_, anyhow::Error>(())
            })
            .await?;
    }
    let setup = started.elapsed();
    let before = dir_size(&data);
    println!(
        "{members} members with subscriptions set up in {setup:.1?} ({} bytes on disk)",
        before
    );

    let spec = Spec {
        name: "Bench".into(),
        template: "Hi {{first_name}}, 20% off this weekend".into(),
        channel: "sms".into(),
        subject: None,
        kind: Kind::Marketing,
        segment: None,
        trigger: Trigger::Manual,
        status: Default::default(),
    };
    state
        .store
        .write(move |tx| {
            campaigns::put(tx, tenant, "bench", spec.clone(), now)?;
            campaigns::run_now(tx, tenant, "bench", "1", now)
        })
        .await?;
    state.campaigns.wake();
    let run = Instant::now();
    let mut accepted_at = None;
    loop {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let st = campaigns::stats(&state.store.read()?, tenant, "bench")?;
        if accepted_at.is_none() && st.targeted as usize >= members {
            accepted_at = Some(run.elapsed());
            println!(
                "expanded and accepted {} messages in {:.1?}: {:.0} messages/s (skipped: {:?})",
                st.sent,
                run.elapsed(),
                st.sent as f64 / run.elapsed().as_secs_f64(),
                st.skipped
            );
        }
        if accepted_at.is_some() && st.delivered as usize + st.failed as usize >= st.sent as usize {
            println!(
                "all delivered {:.1?} after the run started: {:.0} messages/s end to end",
                run.elapsed(),
                st.sent as f64 / run.elapsed().as_secs_f64()
            );
            break;
        }
        if run.elapsed() > Duration::from_secs(1800) {
            println!("gave up after 30 minutes: {st:?}");
            break;
        }
    }
    let after = dir_size(&data);
    println!(
        "store growth for the run: {} bytes, {:.0} bytes per member",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / members as f64
    );
    running.stop().await?;
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
