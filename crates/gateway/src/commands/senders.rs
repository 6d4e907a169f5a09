//! `gateway senders pause|resume NAME`: stop or restart the sends of one
//! sender, keeping its queue. A worker notices within a second.

use gateway_config::Role;

use super::{load_settings, queue, sender};

pub async fn pause(config: &str, name: &str, reason: &str, json: bool) -> anyhow::Result<()> {
    let settings = load_settings(config, Role::Ops)?;
    let sender = sender(&settings, name)?;
    let why = serde_json::json!({ "by": "operator", "title": reason, "at_ms": super::unix_ms() })
        .to_string();
    queue(&settings)?
        .pause_sender(&sender.phone_number_id, &why)
        .await?;
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
    let was_paused = queue(&settings)?
        .resume_sender(&sender.phone_number_id)
        .await?;
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
