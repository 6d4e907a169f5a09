//! `gateway dlq list|replay|purge`: the messages that failed for good, by
//! sender and Meta error code; queueing them again once the cause is fixed,
//! or deleting them.

use anyhow::Context;
use gateway_config::{Role, Settings};
use gateway_queue::DeadLetterFilter;

use super::{load_settings, ops_queue, redis_context, sender};

pub struct Selection<'a> {
    pub sender: Option<&'a str>,
    pub code: Option<i64>,
    pub ids: Vec<String>,
}

pub async fn list(
    config: &str,
    selection: Selection<'_>,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let settings = load_settings(config, Role::Ops)?;
    let pnids = senders(&settings, selection.sender)?;
    let queue = ops_queue(&settings).await?;
    let filter = filter(&selection);
    let mut letters = Vec::new();
    for pnid in pnids {
        letters.extend(
            queue
                .dead_letters(&pnid, &filter, limit.saturating_sub(letters.len()))
                .await
                .with_context(|| redis_context(&settings))?,
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&letters)?);
        return Ok(());
    }
    if letters.is_empty() {
        println!("no dead letters");
    }
    for letter in &letters {
        println!(
            "{}  {}  by {}  to {}  {}  code {} ({})  attempts {}  {}",
            letter.id,
            letter.sender,
            letter.client,
            letter.recipient,
            letter.kind,
            letter.code,
            letter.reason,
            letter.attempts,
            letter.title
        );
    }
    Ok(())
}

pub async fn replay(config: &str, selection: Selection<'_>, json: bool) -> anyhow::Result<()> {
    if selection.sender.is_none() && selection.code.is_none() && selection.ids.is_empty() {
        // Replaying everything is allowed, but only when asked for by name.
        anyhow::bail!("name what to replay: --sender, --code, --id, or --all");
    }
    replay_selected(config, selection, json).await
}

pub async fn replay_all(config: &str, json: bool) -> anyhow::Result<()> {
    replay_selected(
        config,
        Selection {
            sender: None,
            code: None,
            ids: Vec::new(),
        },
        json,
    )
    .await
}

async fn replay_selected(config: &str, selection: Selection<'_>, json: bool) -> anyhow::Result<()> {
    let settings = load_settings(config, Role::Ops)?;
    let pnids = senders(&settings, selection.sender)?;
    let queue = ops_queue(&settings).await?;
    let filter = filter(&selection);
    let mut total = 0;
    for pnid in pnids {
        total += queue
            .replay_dead_letters(&pnid, &filter, super::unix_ms())
            .await
            .with_context(|| redis_context(&settings))?;
    }
    if json {
        println!("{}", serde_json::json!({ "replayed": total }));
    } else {
        println!("replayed {total} message(s)");
    }
    Ok(())
}

/// Deletes the selected dead letters; `all` (with no other selector) is
/// the only way to name every one. `older_than_seconds` keeps the recent ones.
pub async fn purge(
    config: &str,
    selection: Selection<'_>,
    all: bool,
    older_than_seconds: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    let selected =
        selection.sender.is_some() || selection.code.is_some() || !selection.ids.is_empty();
    if !selected && !all {
        anyhow::bail!(
            "name what to purge: --sender, --code, --id, or --all (add --older-than-seconds N to keep recent ones)"
        );
    }
    let settings = load_settings(config, Role::Ops)?;
    let pnids = senders(&settings, selection.sender)?;
    let queue = ops_queue(&settings).await?;
    let filter = filter(&selection);
    let cutoff = older_than_seconds.map(|seconds| {
        super::unix_ms()
            .saturating_sub(i64::try_from(seconds.saturating_mul(1_000)).unwrap_or(i64::MAX))
    });
    let mut per_sender = Vec::new();
    for pnid in pnids {
        let purged = queue
            .purge_dead_letters(&pnid, &filter, cutoff)
            .await
            .with_context(|| redis_context(&settings))?;
        let name = settings
            .sender(&pnid)
            .map_or(pnid.clone(), |s| s.name.clone());
        per_sender.push((name, purged));
    }
    let total: usize = per_sender.iter().map(|(_, n)| n).sum();
    if json {
        let senders: serde_json::Map<String, serde_json::Value> = per_sender
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| (name, n.into()))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "purged": total, "senders": senders })
        );
    } else {
        println!("purged {total} dead letter(s)");
        for (name, n) in per_sender.iter().filter(|(_, n)| *n > 0) {
            println!("  {name}: {n}");
        }
    }
    Ok(())
}

fn filter(selection: &Selection<'_>) -> DeadLetterFilter {
    DeadLetterFilter {
        code: selection.code,
        ids: (!selection.ids.is_empty()).then(|| selection.ids.clone()),
        // The operator's view: every client's messages.
        client: None,
    }
}

/// The phone_number_ids to look at: the one named, or all.
fn senders(settings: &Settings, name: Option<&str>) -> anyhow::Result<Vec<String>> {
    Ok(match name {
        Some(name) => vec![sender(settings, name)?.phone_number_id.clone()],
        None => settings
            .senders
            .iter()
            .map(|s| s.phone_number_id.clone())
            .collect(),
    })
}
