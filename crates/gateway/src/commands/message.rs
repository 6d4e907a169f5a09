//! `gateway message show ID` (or `--wamid W`): a message's status, wamid,
//! attempts, error and history, as `GET /messages/{id}` answers it but for
//! any sender and without a client key.

use anyhow::{Context, bail};
use gateway_config::Role;
use gateway_domain::MessageId;
use gateway_queue::MessageRecord;
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
        Lookup::Id(id) => MessageId::parse(id).with_context(|| {
            format!("{id:?} is not a message id (they look like 106540352242922-1764000000000-0)")
        })?,
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
