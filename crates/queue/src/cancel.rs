//! Cancelling messages: one by its id, or each of a client's messages from
//! one sender whose metadata matches a filter (a campaign that must stop).
//!
//! A message's fate key (`keys::fate`) decides between a client's cancel
//! and a worker's send, each side in one atomic step: the worker claims the
//! message as the first step of every attempt ([`Queue::claim_send`]), the
//! cancel takes only a message nobody claimed (`cancel.lua`). So exactly
//! one side wins, never both and never neither, whichever comes first and
//! whatever crashes: a message being sent, or past it, answers with its
//! state; a cancelled one is never sent, and leaves its stream or schedule
//! when it is next touched, if not at once.

use std::time::Duration;

use gateway_domain::{Lane, MessageId, MessageStatus};
use redis::streams::StreamRangeReply;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{Delivery, Queue, QueueError, fields, history_event, keys, scripts};

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The message is cancelled now: it will not be sent.
    Cancelled(Cancelled),
    /// It was cancelled before.
    Already,
    /// It is being sent, or is past sending: it stays in this state.
    NotCancellable(MessageStatus),
    /// No such message (unknown, or its record expired).
    Missing,
}

/// A message that was just cancelled: what its status event needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    pub id: MessageId,
    pub client: String,
    pub recipient: String,
    pub callback_url: Option<String>,
    /// JSON object, as the caller gave it.
    pub metadata: Option<String>,
}

/// What a worker's claim on a message it is about to send found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendClaim {
    /// The message is the worker's to send; a cancel is refused until the
    /// attempt's outcome is recorded. The recipient's window, as
    /// [`Queue::window_opened_at`] reads it.
    Claimed { window_opened_ms: Option<i64> },
    /// A client cancelled it: it has left its stream, not to be sent.
    Cancelled,
}

/// Which messages a bulk cancel takes: those of `client` (every client's
/// when `None`) whose metadata has each of these values.
#[derive(Debug, Clone, Default)]
pub struct CancelFilter {
    pub client: Option<String>,
    pub metadata: Map<String, Value>,
}

impl CancelFilter {
    /// Whether a message sent by `client` with `metadata` (its JSON text)
    /// matches: every key of the filter is in the metadata, with the same
    /// value and type.
    pub fn matches(&self, client: &str, metadata: Option<&str>) -> bool {
        if self.client.as_deref().is_some_and(|c| c != client) {
            return false;
        }
        let Some(Ok(Value::Object(metadata))) = metadata.map(serde_json::from_str::<Value>) else {
            return self.metadata.is_empty();
        };
        self.metadata
            .iter()
            .all(|(key, wanted)| metadata.get(key) == Some(wanted))
    }
}

/// A fate key's value while a worker sends the message, as the scripts
/// write and compare it.
const SENDING: &str = "sending";

/// Stream entries and scheduled messages read per round trip in a sweep.
const SWEEP_PAGE: usize = 500;

impl Queue {
    /// Claims a message the caller is about to send (see [`SendClaim`]);
    /// `sending_ttl` bounds the claim if the caller dies before recording
    /// the attempt's outcome. The recipient's window is read only if
    /// `read_window` (a free-form body depends on it; a template does not).
    ///
    /// Nearly every claim finds the fate key absent (no cancel, no mark
    /// left by an attempt that died): one `SET … NX GET` takes it then, in
    /// the round trip that reads the window. Every message makes a claim,
    /// and Redis spends some 3 µs on that command against 20 µs on a
    /// script. A key that is there, cancelled or an old mark, is decided
    /// by `claim_send.lua`, whose read and write no cancel can come between;
    /// the window read with the `SET` holds for it too.
    pub async fn claim_send(
        &self,
        phone_number_id: &str,
        delivery: &Delivery,
        sending_ttl: Duration,
        read_window: bool,
    ) -> Result<SendClaim, QueueError> {
        let fate_key = keys::fate(phone_number_id, delivery.message_id.as_str());
        let sending_ttl_ms = u64::try_from(sending_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut take = redis::cmd("SET");
        take.arg(&fate_key)
            .arg(SENDING)
            .arg("NX")
            .arg("PX")
            .arg(sending_ttl_ms)
            .arg("GET");
        let mut conn = self.conn.clone();
        let (found, window): (Option<String>, Option<String>) = if read_window {
            redis::pipe()
                .add_command(take)
                .cmd("GET")
                .arg(keys::window(phone_number_id, delivery.recipient.key()))
                .query_async(&mut conn)
                .await?
        } else {
            (take.query_async(&mut conn).await?, None)
        };
        let claimed = found.is_none()
            || scripts::ClaimSend {
                fate_key: fate_key.into(),
                stream_key: keys::stream(phone_number_id, delivery.lane).into(),
                group: keys::CONSUMER_GROUP.into(),
                entry_id: (&delivery.entry_id).into(),
                sending_ttl_ms: sending_ttl_ms.into(),
            }
            .invocation()
            .invoke_async::<i64>(&mut conn)
            .await?
                == 1;
        Ok(if claimed {
            SendClaim::Claimed {
                window_opened_ms: window.and_then(|w| w.parse().ok()),
            }
        } else {
            SendClaim::Cancelled
        })
    }

    /// Gives back a claim whose attempt ended before its call with no
    /// outcome recorded, so that the message may be cancelled again.
    pub async fn release_claim(
        &self,
        phone_number_id: &str,
        id: &MessageId,
    ) -> Result<(), QueueError> {
        let _: i64 = scripts::ReleaseClaim {
            fate_key: keys::fate(phone_number_id, id.as_str()).into(),
        }
        .invocation()
        .invoke_async(&mut self.conn.clone())
        .await?;
        Ok(())
    }

    /// Cancels a message unless it is being sent or was sent.
    pub async fn cancel(&self, id: &MessageId, now_ms: i64) -> Result<CancelOutcome, QueueError> {
        let reply: Vec<String> = self
            .cancel_invocation(id, now_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        outcome(id, reply)
    }

    /// Cancels each of these messages of one sender, in one round trip.
    pub async fn cancel_all(
        &self,
        ids: &[MessageId],
        now_ms: i64,
    ) -> Result<Vec<CancelOutcome>, QueueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        // Loaded first, in the same pipeline, so the EVALSHAs find it.
        pipe.cmd("SCRIPT")
            .arg("LOAD")
            .arg(scripts::Cancel::source())
            .ignore();
        for id in ids {
            pipe.add_command(self.cancel_invocation(id, now_ms).command());
        }
        let replies: Vec<Vec<String>> = pipe.query_async(&mut self.conn.clone()).await?;
        ids.iter()
            .zip(replies)
            .map(|(id, reply)| outcome(id, reply))
            .collect()
    }

    fn cancel_invocation(&self, id: &MessageId, now_ms: i64) -> scripts::ScriptCall {
        let pnid = id.phone_number_id();
        let accepted_ms = id.accepted_at_ms();
        scripts::Cancel {
            fate_key: keys::fate(pnid, id.as_str()).into(),
            record_key: keys::record(pnid, id.as_str()).into(),
            stream_key: keys::stream(pnid, id.lane()).into(),
            group: keys::CONSUMER_GROUP.into(),
            entry_id: id.entry_id().unwrap_or("").to_owned().into(),
            now_ms: now_ms.into(),
            event: history_event("cancelled", now_ms, None).into(),
            queued_event: history_event("queued", accepted_ms, None).into(),
            record_ttl_ms: self.record_ttl_ms.into(),
            accepted_ms: accepted_ms.into(),
            lane_code: id.lane().code().into(),
            client_field: fields::CLIENT.into(),
            recipient_field: fields::RECIPIENT.into(),
            callback_field: fields::CALLBACK.into(),
            metadata_field: fields::METADATA.into(),
        }
        .invocation()
    }

    /// The sender's messages that match `filter` and were accepted by
    /// `accepted_by_ms`, wherever they wait: in either stream (also those a
    /// worker holds, parked or waiting for their next attempt) or in the
    /// schedule. Read a page at a time; some may be sent or cancelled
    /// meanwhile, which [`Queue::cancel_all`] then answers.
    pub async fn waiting_matching(
        &self,
        phone_number_id: &str,
        filter: &CancelFilter,
        accepted_by_ms: i64,
    ) -> Result<Vec<MessageId>, QueueError> {
        let mut found = Vec::new();
        let accepted_in_time = |id: &MessageId| id.accepted_at_ms() <= accepted_by_ms;
        for lane in [Lane::Transactional, Lane::Bulk] {
            let stream = keys::stream(phone_number_id, lane);
            let mut start = "-".to_owned();
            loop {
                let page: StreamRangeReply = redis::cmd("XRANGE")
                    .arg(&stream)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(SWEEP_PAGE)
                    .query_async(&mut self.conn.clone())
                    .await?;
                let Some(last) = page.ids.last() else { break };
                start = format!("({}", last.id);
                let full = page.ids.len() == SWEEP_PAGE;
                for entry in page.ids {
                    // An entry no worker could read (malformed) is not
                    // anyone's message to cancel.
                    let Ok(delivery) = Delivery::from_entry(phone_number_id, lane, entry) else {
                        continue;
                    };
                    if accepted_in_time(&delivery.message_id)
                        && filter.matches(&delivery.client, delivery.metadata.as_deref())
                    {
                        found.push(delivery.message_id);
                    }
                }
                if !full {
                    break;
                }
            }
        }
        let scheduled = keys::scheduled(phone_number_id);
        let mut offset = 0;
        loop {
            let members: Vec<String> = redis::cmd("ZRANGE")
                .arg(&scheduled)
                .arg(offset)
                .arg(offset + SWEEP_PAGE - 1)
                .query_async(&mut self.conn.clone())
                .await?;
            offset += members.len();
            for member in &members {
                if let Some(id) = scheduled_match(member, filter)
                    && accepted_in_time(&id)
                {
                    found.push(id);
                }
            }
            if members.len() < SWEEP_PAGE {
                break;
            }
        }
        Ok(found)
    }
}

/// A scheduled message as its sorted-set member holds it.
#[derive(Deserialize)]
struct ScheduledMember {
    id: String,
    /// The entry's field/value pairs, flattened.
    fields: Vec<String>,
}

/// The id of a scheduled member that matches `filter`.
fn scheduled_match(member: &str, filter: &CancelFilter) -> Option<MessageId> {
    let member: ScheduledMember = serde_json::from_str(member).ok()?;
    let field = |name: &str| {
        member
            .fields
            .chunks_exact(2)
            .find(|pair| pair[0] == name)
            .map(|pair| pair[1].as_str())
    };
    filter
        .matches(field(fields::CLIENT)?, field(fields::METADATA))
        .then(|| MessageId::parse(&member.id))
        .flatten()
}

fn outcome(id: &MessageId, reply: Vec<String>) -> Result<CancelOutcome, QueueError> {
    let bad = || QueueError::Protocol(format!("cancel of {id} answered {reply:?}"));
    let some = |text: &str| (!text.is_empty()).then(|| text.to_owned());
    match reply.first().map(String::as_str) {
        Some("cancelled") if reply.len() == 5 => Ok(CancelOutcome::Cancelled(Cancelled {
            id: id.clone(),
            client: reply[1].clone(),
            recipient: reply[2].clone(),
            callback_url: some(&reply[3]),
            metadata: some(&reply[4]),
        })),
        Some("already") => Ok(CancelOutcome::Already),
        Some("missing") => Ok(CancelOutcome::Missing),
        Some("conflict") => reply
            .get(1)
            .and_then(|status| MessageStatus::parse(status))
            .map(CancelOutcome::NotCancellable)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(client: Option<&str>, metadata: Value) -> CancelFilter {
        CancelFilter {
            client: client.map(str::to_owned),
            metadata: metadata.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn a_filter_matches_every_value_it_names_with_its_type() {
        let campaign = filter(Some("crm"), json!({"campaign": "spring", "wave": 2}));
        let theirs = r#"{"campaign":"spring","wave":2,"user":"u1"}"#;
        assert!(campaign.matches("crm", Some(theirs)));
        assert!(
            !campaign.matches("billing", Some(theirs)),
            "another client's"
        );
        assert!(!campaign.matches("crm", Some(r#"{"campaign":"spring","wave":"2"}"#)));
        assert!(!campaign.matches("crm", Some(r#"{"campaign":"spring"}"#)));
        assert!(!campaign.matches("crm", None));
        assert!(!campaign.matches("crm", Some("not json")));
        assert!(filter(None, json!({"wave": 2})).matches("billing", Some(theirs)));
    }

    #[test]
    fn a_scheduled_member_is_matched_by_its_fields() {
        let member = json!({
            "id": "106540352242922-s1700000000000-0",
            "lane": "t",
            "fields": ["snd", "support", "cli", "crm", "meta", "{\"campaign\":\"spring\"}"],
        })
        .to_string();
        let spring = filter(Some("crm"), json!({"campaign": "spring"}));
        assert_eq!(
            scheduled_match(&member, &spring).map(|id| id.as_str().to_owned()),
            Some("106540352242922-s1700000000000-0".to_owned())
        );
        let autumn = filter(Some("crm"), json!({"campaign": "autumn"}));
        assert_eq!(scheduled_match(&member, &autumn), None);
        assert_eq!(scheduled_match("{}", &spring), None);
    }

    #[test]
    fn a_cancel_reply_is_read_or_refused() {
        let id = MessageId::parse("106540352242922-1700000000000-0").expect("id");
        let reply = |parts: &[&str]| parts.iter().map(|p| (*p).to_owned()).collect();
        assert_eq!(
            outcome(&id, reply(&["conflict", "sent"])).ok(),
            Some(CancelOutcome::NotCancellable(MessageStatus::Sent))
        );
        assert_eq!(
            outcome(&id, reply(&["cancelled", "crm", "+1650", "", "{}"])).ok(),
            Some(CancelOutcome::Cancelled(Cancelled {
                id: id.clone(),
                client: "crm".into(),
                recipient: "+1650".into(),
                callback_url: None,
                metadata: Some("{}".into()),
            }))
        );
        assert!(outcome(&id, reply(&["conflict", "bogus"])).is_err());
        assert!(outcome(&id, reply(&[])).is_err());
    }
}
