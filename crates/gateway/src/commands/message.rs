//! `gateway message show ID` (or `--wamid W`): a message's status, wamid,
//! attempts, error and history, as `GET /messages/{id}` answers it but for
//! any sender and without a client key. `gateway message cancel ID`: as
//! `DELETE /messages/{id}`, for any sender.

use anyhow::{Context, bail};
use gateway_config::Role;
use gateway_domain::MessageId;
use gateway_domain::clock::unix_ms;
use gateway_notify::{Notifier, Outbox};
use gateway_queue::{CancelOutcome, MessageRecord};
use serde_json::{Value, json};

use super::{load_settings, ops_queue, redis_context, rfc3339};

/// Which message to show.
pub enum Lookup<'a> {
    Id(&'a str),
    Wamid(&'a str),
}

pub async fn show(config: &str, lookup: Lookup<'_>, json: bool) -> anyhow::Result<()> {
    let settings = load_settings(config, Role::Ops)?;
    let queue = ops_queue(&settings).await?;
    let id = match lookup {
        Lookup::Id(id) => parse_id(id)?,
        Lookup::Wamid(wamid) => {
            let senders: Vec<String> = settings
                .senders
                .iter()
                .map(|s| s.phone_number_id.clone())
                .collect();
            match queue
                .find_by_wamid(&senders, wamid)
                .await
                .with_context(|| redis_context(&settings))?
            {
                Some(id) => id,
                None => bail!(
                    "no message has wamid {wamid:?} (unknown to the configured senders, or its record expired)"
                ),
            }
        }
    };
    let Some(record) = queue
        .message(&id)
        .await
        .with_context(|| redis_context(&settings))?
    else {
        bail!("no message has id {id} (unknown, or its record expired)");
    };
    let view = render(&record);
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print_human(&record, &view);
    }
    Ok(())
}

/// Cancels a message not sent yet, with its status event; fails (exit 1)
/// for one being sent or past it, naming its state.
pub async fn cancel(config: &str, id: &str, json: bool) -> anyhow::Result<()> {
    let settings = load_settings(config, Role::Ops)?;
    let queue = ops_queue(&settings).await?;
    let id = parse_id(id)?;
    let now_ms = unix_ms();
    match queue
        .cancel(&id, now_ms)
        .await
        .with_context(|| redis_context(&settings))?
    {
        CancelOutcome::Cancelled(cancelled) => {
            let sender = settings
                .senders
                .iter()
                .find(|s| s.phone_number_id == id.phone_number_id());
            if let Some(sender) = sender {
                let outbox = Outbox::new(queue.connection()).capped(settings.notify.max_backlog);
                Notifier::new(outbox, &settings)
                    .cancelled(sender, &cancelled, now_ms)
                    .await
                    .context("cancelled, but its status event could not be queued")?;
            }
        }
        CancelOutcome::Already => {}
        CancelOutcome::NotCancellable(status) => bail!(
            "message {id} is {} and can no longer be cancelled",
            status.as_str()
        ),
        CancelOutcome::Missing => bail!("no message has id {id} (unknown, or its record expired)"),
    }
    if json {
        println!("{}", json!({ "id": id.as_str(), "status": "cancelled" }));
    } else {
        println!("message {id} cancelled");
    }
    Ok(())
}

fn parse_id(id: &str) -> anyhow::Result<MessageId> {
    MessageId::parse(id).with_context(|| {
        format!("{id:?} is not a message id (they look like 106540352242922-1764000000000-0)")
    })
}

/// The same shape as `GET /messages/{id}`.
fn render(record: &MessageRecord) -> Value {
    let history: Vec<Value> = serde_json::from_str::<Vec<Value>>(&record.history)
        .unwrap_or_default()
        .into_iter()
        .map(|mut event| {
            if let Some(map) = event.as_object_mut()
                && let Some(ms) = map.remove("at_ms").and_then(|v| v.as_i64())
            {
                map.insert("at".into(), rfc3339(ms).into());
            }
            event
        })
        .collect();
    json!({
        "id": record.id.as_str(),
        "status": record.status.as_str(),
        "from": record.sender,
        "to": record.recipient.key(),
        "type": record.kind.as_str(),
        "client": record.client,
        "wamid": record.wamid,
        "attempts": record.attempts,
        "fallback_used": record.fallback_used,
        "error": record.error_code.map(|code| json!({ "code": code, "title": record.error_title })),
        "created_at": rfc3339(record.created_ms),
        "updated_at": rfc3339(record.updated_ms),
        "metadata": record.metadata.as_deref().and_then(|m| serde_json::from_str::<Value>(m).ok()),
        "history": history,
    })
}

fn print_human(record: &MessageRecord, view: &Value) {
    println!("message        {}", record.id);
    println!("status         {}", record.status.as_str());
    println!(
        "from           {} to {} ({}), client {}",
        record.sender,
        record.recipient.key(),
        record.kind.as_str(),
        record.client
    );
    println!("wamid          {}", record.wamid.as_deref().unwrap_or("-"));
    println!("attempts       {}", record.attempts);
    println!(
        "fallback used  {}",
        if record.fallback_used { "yes" } else { "no" }
    );
    match record.error_code {
        Some(code) => println!(
            "error          {code} {}",
            record.error_title.as_deref().unwrap_or("")
        ),
        None => println!("error          -"),
    }
    println!("created        {}", rfc3339(record.created_ms));
    println!("updated        {}", rfc3339(record.updated_ms));
    println!("history");
    for event in view["history"].as_array().into_iter().flatten() {
        let at = event["at"].as_str().unwrap_or("-");
        let status = event["status"].as_str().unwrap_or("?");
        let details: Vec<String> = event
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, _)| !matches!(key.as_str(), "at" | "status"))
            .map(|(key, value)| match (key.as_str(), value) {
                ("next_attempt_ms", Value::Number(n)) => {
                    format!(
                        "next attempt {}",
                        n.as_i64().map(rfc3339).unwrap_or_default()
                    )
                }
                (_, Value::String(s)) => format!("{key} {s}"),
                _ => format!("{key} {value}"),
            })
            .collect();
        println!("  {at}  {status:<10} {}", details.join(", "));
    }
}
