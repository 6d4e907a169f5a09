//! `gateway dlq list|replay`: the messages that failed for good, by sender
//! and Meta error code, and queueing them again once the cause is fixed.

use gateway_config::{Role, Settings};
use gateway_queue::DeadLetterFilter;

use super::{load_settings, queue, sender};

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
    let queue = queue(&settings)?;
    let filter = filter(&selection);
    let mut letters = Vec::new();
    for pnid in senders(&settings, selection.sender)? {
        letters.extend(
            queue
                .dead_letters(&pnid, &filter, limit.saturating_sub(letters.len()))
                .await?,
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
            "{}  {}  to {}  {}  code {} ({})  attempts {}  {}",
            letter.id,
            letter.sender,
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
    let queue = queue(&settings)?;
    let filter = filter(&selection);
    let mut total = 0;
    for pnid in senders(&settings, selection.sender)? {
        total += queue
            .replay_dead_letters(&pnid, &filter, super::unix_ms())
            .await?;
    }
    if json {
        println!("{}", serde_json::json!({ "replayed": total }));
    } else {
        println!("replayed {total} message(s)");
    }
    Ok(())
}

fn filter(selection: &Selection<'_>) -> DeadLetterFilter {
    DeadLetterFilter {
        code: selection.code,
        ids: (!selection.ids.is_empty()).then(|| selection.ids.clone()),
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
