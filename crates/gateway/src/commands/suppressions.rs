//! `gateway suppressions list|clear`: the recipients a sender will not
//! message now (opted out of marketing, marketing-capped, not on
//! WhatsApp), and clearing one, for an operator.

use anyhow::Context;
use gateway_config::Role;
use gateway_domain::Recipient;
use gateway_domain::rules::suppression::Scope;

use super::{load_settings, ops_queue, redis_context, rfc3339, sender, unix_ms};

/// Suppressions read per round trip.
const PAGE: usize = 500;

pub async fn list(config: &str, name: &str, json: bool) -> anyhow::Result<()> {
    let settings = load_settings(config, Role::Ops)?;
    let sender = sender(&settings, name)?;
    let queue = ops_queue(&settings).await?;
    let now = unix_ms();
    let mut cursor = 0;
    let mut all = Vec::new();
    loop {
        let (page, next) = queue
            .suppressions(&sender.phone_number_id, cursor, PAGE, now)
            .await
            .with_context(|| redis_context(&settings))?;
        if json {
            all.extend(page);
        } else {
            for s in page {
                let until = s.until_ms.map_or("until cleared".to_owned(), rfc3339);
                println!(
                    "{}  {:<9}  {}  {:<8}  since {}  {until}",
                    s.recipient,
                    s.scope,
                    s.code,
                    s.source,
                    rfc3339(s.at_ms)
                );
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "sender": sender.name, "suppressions": all })
        );
    }
    Ok(())
}

pub async fn clear(
    config: &str,
    name: &str,
    recipient: &str,
    scope: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let settings = load_settings(config, Role::Ops)?;
    let sender = sender(&settings, name)?;
    let recipient = Recipient::from_fields(Some(recipient), None)
        .map_err(|e| anyhow::anyhow!("recipient: {}", e.message))?;
    let scope = scope
        .map(|s| Scope::parse(s).context("--scope is marketing or all"))
        .transpose()?;
    let cleared = ops_queue(&settings)
        .await?
        .clear_suppression(&sender.phone_number_id, recipient.key(), scope, |_| true)
        .await
        .with_context(|| redis_context(&settings))?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "sender": sender.name, "recipient": recipient.key(), "cleared": cleared })
        );
    } else {
        println!(
            "{cleared} suppression(s) of {} cleared for {}",
            recipient.key(),
            sender.name
        );
    }
    Ok(())
}
