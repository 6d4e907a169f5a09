//! `gateway stats [--sender NAME]`: how far behind each sender is, who
//! drains it and whether it is paused, and the queues every sender shares
//! (workers, webhook events, notifications). Read-only.

use anyhow::Context;
use gateway_config::{Role, SenderSettings, Settings};
use gateway_domain::Lane;
use gateway_queue::{SenderStats, SharedStats, StreamDepth};
use serde_json::{Value, json};

use super::{human_duration, load_settings, ops_queue, redis_context, rfc3339, sender, unix_ms};

/// The window `recipients_last_minute` counts over.
const LAST_MINUTE_MS: i64 = 60_000;

pub async fn run(config: &str, name: Option<&str>, json: bool) -> anyhow::Result<()> {
    let settings = load_settings(config, Role::Ops)?;
    let senders: Vec<&SenderSettings> = match name {
        Some(name) => vec![sender(&settings, name)?.as_ref()],
        None => settings.senders.iter().map(AsRef::as_ref).collect(),
    };
    let queue = ops_queue(&settings).await?;
    let now = unix_ms();
    let mut per_sender = Vec::with_capacity(senders.len());
    for s in &senders {
        let stats = queue
            .sender_stats(&s.phone_number_id, now - LAST_MINUTE_MS)
            .await
            .with_context(|| redis_context(&settings))?;
        per_sender.push((*s, stats));
    }
    let shared = queue
        .shared_stats()
        .await
        .with_context(|| redis_context(&settings))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&settings, &per_sender, &shared, now))?
        );
    } else {
        print_human(&settings, &per_sender, &shared, now);
    }
    Ok(())
}

fn to_json(
    settings: &Settings,
    senders: &[(&SenderSettings, SenderStats)],
    shared: &SharedStats,
    now: i64,
) -> Value {
    let senders: Vec<Value> = senders
        .iter()
        .map(|(s, stats)| {
            let load = stats.load(s.rate_per_second);
            let stream = |d: &StreamDepth| {
                json!({ "depth": d.length, "waiting": d.waiting(), "in_flight": d.in_flight, "parked": d.parked })
            };
            json!({
                "name": s.name,
                "phone_number_id": s.phone_number_id,
                "depth": stats.depth(),
                "waiting": stats.transactional.waiting() + stats.bulk.waiting(),
                "in_flight": stats.transactional.in_flight + stats.bulk.in_flight,
                "parked": stats.transactional.parked + stats.bulk.parked,
                "transactional": stream(&stats.transactional),
                "bulk": stream(&stats.bulk),
                "oldest_queued_at": stats.oldest_ms.map(rfc3339),
                "oldest_age_ms": stats.oldest_ms.map(|at| (now - at).max(0)),
                "scheduled": stats.scheduled,
                "next_scheduled_at": stats.next_scheduled_ms.map(rfc3339),
                "dead_letters": stats.dead_letters,
                "recipients_last_minute": stats.recipients_since,
                "rate_per_second": s.rate_per_second,
                "effective_rate": load.rate,
                "predicted_wait_seconds": {
                    "transactional": load.predicted_wait(Lane::Transactional).as_secs_f64(),
                    "bulk": load.predicted_wait(Lane::Bulk).as_secs_f64(),
                },
                "max_queue_seconds": {
                    "transactional": s.max_queue.transactional.as_secs(),
                    "bulk": s.max_queue.bulk.as_secs(),
                },
                "owner": stats.owner.as_ref().map(|worker| json!({
                    "worker": worker,
                    "alive": stats.owner_alive,
                })),
                "paused": stats.paused.as_deref().map(paused_json),
            })
        })
        .collect();
    let live_ms = live_window_ms(settings);
    let workers: Vec<Value> = shared
        .workers
        .iter()
        .map(|(worker, at)| {
            json!({
                "worker": worker,
                "last_heartbeat_at": rfc3339(*at),
                "heartbeat_age_ms": (now - at).max(0),
                "live": now - at <= live_ms,
            })
        })
        .collect();
    json!({
        "at": rfc3339(now),
        "senders": senders,
        "workers": workers,
        "webhook_events": shared.webhook_events,
        "notifications": {
            "queued": shared.notifications_queued,
            "retrying": shared.notifications_retrying,
            "dead": shared.notifications_dead,
        },
    })
}

fn print_human(
    settings: &Settings,
    senders: &[(&SenderSettings, SenderStats)],
    shared: &SharedStats,
    now: i64,
) {
    for (s, stats) in senders {
        println!("sender {} ({})", s.name, s.phone_number_id);
        let (tx, bulk) = (&stats.transactional, &stats.bulk);
        println!(
            "  queue          {} (transactional {} waiting + {} in flight + {} parked, bulk {} + {} + {})",
            stats.depth(),
            tx.waiting(),
            tx.in_flight,
            tx.parked,
            bulk.waiting(),
            bulk.in_flight,
            bulk.parked
        );
        let load = stats.load(s.rate_per_second);
        println!(
            "  predicted wait transactional {:.1} s (max {} s), bulk {:.1} s (max {} s), at {}/s",
            load.predicted_wait(Lane::Transactional).as_secs_f64(),
            s.max_queue.transactional.as_secs(),
            load.predicted_wait(Lane::Bulk).as_secs_f64(),
            s.max_queue.bulk.as_secs(),
            load.rate
        );
        match stats.oldest_ms {
            Some(at) => println!(
                "  oldest         queued {} ago ({})",
                human_duration(now - at),
                rfc3339(at)
            ),
            None => println!("  oldest         -"),
        }
        match stats.next_scheduled_ms {
            Some(due) => println!(
                "  scheduled      {} (next due {})",
                stats.scheduled,
                rfc3339(due)
            ),
            None => println!("  scheduled      {}", stats.scheduled),
        }
        println!("  dead letters   {}", stats.dead_letters);
        println!(
            "  last minute    sent to {} distinct recipient(s); configured rate {}/s",
            stats.recipients_since, s.rate_per_second
        );
        match (&stats.owner, stats.owner_alive) {
            (Some(worker), Some(false)) => println!(
                "  owner          {worker} (gone: the next worker to look takes the sender)"
            ),
            (Some(worker), _) => println!("  owner          {worker}"),
            (None, _) => println!("  owner          none (no worker holds its lease)"),
        }
        match stats.paused.as_deref() {
            Some(why) => println!("  paused         yes: {}", paused_text(why)),
            None => println!("  paused         no"),
        }
    }
    let live_ms = live_window_ms(settings);
    let live = shared
        .workers
        .iter()
        .filter(|(_, at)| now - at <= live_ms)
        .count();
    println!("workers          {live} live");
    for (worker, at) in &shared.workers {
        let state = if now - at <= live_ms {
            ""
        } else {
            " (silent: gone?)"
        };
        println!(
            "  {worker}  last heartbeat {} ago{state}",
            human_duration(now - at)
        );
    }
    println!(
        "webhook events   {} not yet processed",
        shared.webhook_events
    );
    println!(
        "notifications    {} queued, {} retrying, {} dead",
        shared.notifications_queued, shared.notifications_retrying, shared.notifications_dead
    );
}

/// A worker whose heartbeat is older than a lease is taken for gone by the others.
fn live_window_ms(settings: &Settings) -> i64 {
    i64::try_from(settings.worker.lease_ttl.as_millis()).unwrap_or(i64::MAX)
}

/// The stored reason as JSON (`{"by", "title", "at_ms", ...}`), with `at`
/// added; a reason that is not JSON is kept as text.
fn paused_json(why: &str) -> Value {
    match serde_json::from_str::<Value>(why) {
        Ok(mut value) => {
            if let Some(map) = value.as_object_mut()
                && let Some(at) = map.get("at_ms").and_then(Value::as_i64)
            {
                map.insert("at".into(), rfc3339(at).into());
            }
            value
        }
        Err(_) => json!({ "title": why }),
    }
}

fn paused_text(why: &str) -> String {
    let value = paused_json(why);
    let mut parts = Vec::new();
    if let Some(code) = value.get("code").filter(|c| !c.is_null()) {
        parts.push(format!("code {code}"));
    }
    if let Some(title) = value.get("title").and_then(Value::as_str) {
        parts.push(title.to_owned());
    }
    if let Some(by) = value.get("by").and_then(Value::as_str) {
        parts.push(format!("by {by}"));
    }
    if let Some(at) = value.get("at").and_then(Value::as_str) {
        parts.push(format!("at {at}"));
    }
    if parts.is_empty() {
        why.to_owned()
    } else {
        parts.join(", ")
    }
}
