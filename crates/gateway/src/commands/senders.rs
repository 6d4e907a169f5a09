//! `gateway senders pause|resume NAME`: stop or restart the sends of one
//! sender, keeping its queue. A worker notices within a second.

use anyhow::Context;
use gateway_config::Role;

use super::{load_settings, ops_queue, redis_context, sender};

pub async fn pause(config: &str, name: &str, reason: &str, json: bool) -> anyhow::Result<()> {
    let settings = load_settings(config, Role::Ops)?;
    let sender = sender(&settings, name)?;
    let why = serde_json::json!({ "by": "operator", "title": reason, "at_ms": super::unix_ms() })
        .to_string();
    ops_queue(&settings)
        .await?
        .pause_sender(&sender.phone_number_id, &why)
        .await
        .with_context(|| redis_context(&settings))?;
    report(
        json,
        &sender.name,
        "paused",
        &format!("sender {} paused; its queue is kept", sender.name),
    );
    Ok(())
}

pub async fn resume(config: &str, name: &str, json: bool) -> anyhow::Result<()> {
    let settings = load_settings(config, Role::Ops)?;
    let sender = sender(&settings, name)?;
    let was_paused = ops_queue(&settings)
        .await?
        .resume_sender(&sender.phone_number_id)
        .await
        .with_context(|| redis_context(&settings))?;
    let text = if was_paused {
        format!("sender {} resumed", sender.name)
    } else {
        format!("sender {} was not paused", sender.name)
    };
    report(
        json,
        &sender.name,
        if was_paused { "resumed" } else { "not_paused" },
        &text,
    );
    Ok(())
}

fn report(json: bool, sender: &str, state: &str, text: &str) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "sender": sender, "state": state })
        );
    } else {
        println!("{text}");
    }
}
