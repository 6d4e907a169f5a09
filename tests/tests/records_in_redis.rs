//! A worker claims a message before it sends it: a fresh one, a cancelled
//! one and one an attempt that died left marked each end as they must. A
//! record comes from the worker that holds the message: a stale owner's
//! late record (its lease lost, the message finished by the next owner)
//! changes nothing. Records and entries an older gateway wrote, under the
//! field names of before, are still read. A recorded send stays among the
//! sender's recent recipients as long as the pair limit counts it.

use std::time::Duration;

use gateway_domain::webhook::{MetaError, MetaStatus};
use gateway_domain::{Lane, MessageId};
use gateway_queue::{
    CancelOutcome, Claim, DeadLetterFilter, Delivery, Outcome, Progress, Queue, SendClaim,
    StatusChange,
};
use gateway_tests::RedisServer;

const PNID: &str = "1000000000";

/// A message's first attempt.
const FIRST_ATTEMPT: Progress = Progress {
    attempts: 1,
    fallback_used: false,
};

/// Queues one template message to `recipient`, as the api would.
async fn queue_template_to(queue: &Queue, recipient: &str) {
    let _: String = redis::cmd("XADD")
        .arg(gateway_queue::keys::queue(PNID))
        .arg("*")
        .arg(&[
            "snd", "s0", "cli", "billing", "rcpt", recipient, "kind", "template", "body", "{}",
        ])
        .query_async(&mut queue.connection())
        .await
        .expect("XADD");
}

/// The message as `consumer` reads it: new, or taken over from the
/// consumer that read it before.
async fn read_by(queue: &Queue, consumer: &str) -> Delivery {
    let stream = gateway_queue::keys::queue(PNID);
    let mut reader = queue.consumer(
        &stream,
        gateway_queue::keys::CONSUMER_GROUP,
        consumer,
        Claim::Takeover { reserved: &[] },
    );
    let held = Default::default();
    let mut entries = reader.next(10, &held).await.expect("read");
    if entries.is_empty() {
        entries = reader.next(10, &held).await.expect("read");
    }
    Delivery::from_entry(PNID, Lane::Transactional, entries.remove(0)).expect("a message")
}

/// The fate key of `delivery` (`sending`, `cancelled` or none) and the
/// milliseconds it has left.
async fn fate_mark(queue: &Queue, delivery: &Delivery) -> (Option<String>, i64) {
    let key = gateway_queue::keys::fate(PNID, delivery.message_id.as_str());
    let mut conn = queue.connection();
    let value: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    (value, ttl_ms)
}

/// Claims `delivery` for a minute: the claim must take it and leave it
/// marked `sending` for that minute. Returns the window the claim read.
async fn claim_for_a_minute(queue: &Queue, delivery: &Delivery, read_window: bool) -> Option<i64> {
    let claim = queue
        .claim_send(PNID, delivery, Duration::from_secs(60), read_window)
        .await
        .expect("claim");
    let SendClaim::Claimed { window_opened_ms } = claim else {
        panic!("not claimed: {claim:?}");
    };
    let (value, ttl_ms) = fate_mark(queue, delivery).await;
    assert_eq!(value.as_deref(), Some("sending"));
    assert!(
        ttl_ms > 55_000,
        "the mark lasts the claim's time to live: {ttl_ms} ms left"
    );
    window_opened_ms
}

/// A claim takes a message nobody touched, and reads the recipient's window
/// when asked; a message its client cancelled leaves its stream unsent; a
/// mark left by an attempt that died is taken over with a fresh time to
/// live, so that it outlasts this attempt's call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_takes_a_fresh_message_drops_a_cancelled_one_and_renews_an_old_mark() {
    let redis = RedisServer::start();
    let queue = redis.queue();
    let mut conn = queue.connection();

    queue_template_to(&queue, "+16505551234").await;
    let fresh = read_by(&queue, "worker").await;
    let _: () = redis::cmd("SET")
        .arg(gateway_queue::keys::window(PNID, fresh.recipient.key()))
        .arg("1700000000000")
        .query_async(&mut conn)
        .await
        .expect("SET");
    assert_eq!(
        claim_for_a_minute(&queue, &fresh, true).await,
        Some(1_700_000_000_000)
    );
    assert!(
        matches!(
            queue.cancel(&fresh.message_id, 2_000).await,
            Ok(CancelOutcome::NotCancellable(_))
        ),
        "a claimed message is not cancelled"
    );

    // An attempt that died left its mark, about to run out: the claim
    // renews it.
    let _: () = redis::cmd("SET")
        .arg(gateway_queue::keys::fate(PNID, fresh.message_id.as_str()))
        .arg("sending")
        .arg("PX")
        .arg(200)
        .query_async(&mut conn)
        .await
        .expect("SET");
    assert_eq!(claim_for_a_minute(&queue, &fresh, false).await, None);
    let sent = Outcome::Sent { wamid: "wamid.A" };
    assert!(
        queue
            .record(PNID, &fresh, FIRST_ATTEMPT, sent, 2_500)
            .await
            .expect("recorded")
    );

    // A message read ahead and cancelled before its claim.
    queue_template_to(&queue, "+16505551235").await;
    let cancelled = read_by(&queue, "worker").await;
    assert!(matches!(
        queue.cancel(&cancelled.message_id, 3_000).await,
        Ok(CancelOutcome::Cancelled(_))
    ));
    let claim = queue
        .claim_send(PNID, &cancelled, Duration::from_secs(60), false)
        .await
        .expect("claim");
    assert_eq!(claim, SendClaim::Cancelled);
    let (value, _) = fate_mark(&queue, &cancelled).await;
    assert_eq!(value.as_deref(), Some("cancelled"), "the cancel stands");
    let entries: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg(gateway_queue::keys::queue(PNID))
        .arg(&cancelled.entry_id)
        .arg(&cancelled.entry_id)
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    assert!(entries.is_empty(), "the cancelled message left its stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owners_late_record_changes_nothing() {
    let redis = RedisServer::start();
    let queue = redis.queue();
    let mut conn = queue.connection();
    queue_template_to(&queue, "+16505551234").await;

    let stale = read_by(&queue, "old-owner").await;
    // The next owner takes the message over, sends and records it.
    let current = read_by(&queue, "new-owner").await;
    assert_eq!(current.entry_id, stale.entry_id);
    let sent = |wamid| Outcome::Sent { wamid };
    assert!(
        queue
            .record(PNID, &current, FIRST_ATTEMPT, sent("wamid.NEW"), 1_000)
            .await
            .expect("recorded")
    );

    // The old owner's answer comes late: it changes nothing.
    for outcome in [
        sent("wamid.OLD"),
        Outcome::Failed {
            code: 131026,
            title: "not on WhatsApp",
            reason: "permanent_error",
        },
        Outcome::Retrying {
            code: 1,
            title: "try again",
            next_attempt_ms: 5_000,
        },
    ] {
        assert!(
            !queue
                .record(PNID, &stale, FIRST_ATTEMPT, outcome, 2_000)
                .await
                .expect("answered"),
            "{outcome:?}"
        );
    }
    let record = queue
        .message(&current.message_id)
        .await
        .expect("read")
        .expect("a record");
    assert_eq!(record.wamid.as_deref(), Some("wamid.NEW"));
    assert_eq!(record.status.as_str(), "sent");
    let dead: u64 = redis::cmd("XLEN")
        .arg(gateway_queue::keys::dead_letters(PNID))
        .query_async(&mut conn)
        .await
        .expect("XLEN");
    assert_eq!(dead, 0, "no dead letter from the stale failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_entries_under_the_old_field_names_are_still_read() {
    let redis = RedisServer::start();
    let queue = redis.queue();
    let mut conn = queue.connection();

    // A record as gateways wrote it before entries and records shared one
    // vocabulary, sent and waiting for Meta's statuses.
    let id = MessageId::new(PNID, Lane::Transactional, "1700000000000-0").expect("id");
    let record = gateway_queue::keys::record(PNID, id.as_str());
    let _: () = redis::cmd("HSET")
        .arg(&record)
        .arg(&[
            ("status", "sent"),
            ("wamid", "wamid.OLD"),
            ("sender", "s0"),
            ("client", "billing"),
            ("to", "+16505551234"),
            ("kind", "template"),
            ("body", "{}"),
            ("metadata", r#"{"order":7}"#),
            ("callback_url", "https://billing.internal/hook"),
            ("attempts", "1"),
            ("created_ms", "1700000000000"),
            ("history", "[]"),
        ])
        .query_async(&mut conn)
        .await
        .expect("HSET");

    let read = queue.message(&id).await.expect("read").expect("a record");
    assert_eq!(
        (
            read.sender.as_str(),
            read.client.as_str(),
            read.recipient.key()
        ),
        ("s0", "billing", "+16505551234")
    );
    assert_eq!(read.metadata.as_deref(), Some(r#"{"order":7}"#));

    let view = queue
        .status_view(PNID, "wamid.OLD", Some(id.as_str()), MetaStatus::Failed)
        .await
        .expect("read")
        .expect("a view");
    assert_eq!(view.client, "billing");
    assert_eq!(view.recipient, "+16505551234");
    assert_eq!(
        view.callback_url.as_deref(),
        Some("https://billing.internal/hook")
    );

    // Meta reports it failed: the dead letter carries the message, ready
    // for replay.
    let error = MetaError {
        code: 131026,
        title: "not on WhatsApp".into(),
    };
    queue
        .apply_status(
            PNID,
            &id,
            StatusChange {
                wamid: "wamid.OLD",
                status: MetaStatus::Failed,
                at_ms: 1_700_000_001_000,
                now_ms: 1_700_000_001_000,
                error: Some(&error),
                reason: "permanent_error",
            },
        )
        .await
        .expect("applied");
    let letters = queue
        .dead_letters(PNID, &DeadLetterFilter::default(), 10)
        .await
        .expect("dead letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        (letters[0].sender.as_str(), letters[0].recipient.as_str()),
        ("s0", "+16505551234")
    );

    // An entry queued again by an older gateway (`att`, `fbu`, `due`).
    let _: String = redis::cmd("XADD")
        .arg(gateway_queue::keys::queue(PNID))
        .arg("*")
        .arg(&[
            ("id", id.as_str()),
            ("snd", "s0"),
            ("cli", "billing"),
            ("rcpt", "+16505551234"),
            ("kind", "template"),
            ("body", "{}"),
            ("att", "2"),
            ("fbu", "1"),
            ("due", "1700000005000"),
        ])
        .query_async(&mut conn)
        .await
        .expect("XADD");
    let delivery = read_by(&queue, "worker").await;
    assert_eq!(delivery.prior.attempts, 2);
    assert!(delivery.prior.fallback_used);
    assert_eq!(delivery.due_ms(), 1_700_000_005_000);
}

/// A scheduled bulk message that Meta fails after accepting it is queued
/// again behind the bulk backlog, not ahead of the transactional one: the
/// record keeps the stream the message was in (its scheduled id cannot
/// tell).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_bulk_message_failed_after_sending_is_queued_again_as_bulk() {
    let redis = RedisServer::start();
    let queue = redis.queue();
    let mut conn = queue.connection();
    let accepted_ms = 1_000;
    let due_ms = 60_000;
    let gateway_queue::EnqueueOutcome::Queued(queued) = queue
        .enqueue(
            &gateway_queue::NewMessage {
                sender_name: "s0",
                phone_number_id: PNID,
                client: "billing",
                recipient: "+16505551234",
                kind: "template",
                graph_body: "{}",
                fallback_body: None,
                metadata: None,
                idempotency: None,
                lane: Lane::Bulk,
                send_after_ms: Some(due_ms),
                expires_at_ms: None,
                callback_url: None,
                template_category: None,
                fallback_category: None,
                request: "request-1",
            },
            accepted_ms,
        )
        .await
        .expect("enqueued")
    else {
        panic!("not queued");
    };
    let (moved, _) = queue
        .promote_scheduled(PNID, due_ms, 10)
        .await
        .expect("promoted");
    assert_eq!(moved, 1);

    let bulk = gateway_queue::keys::bulk(PNID);
    let mut reader = queue.consumer(
        &bulk,
        gateway_queue::keys::CONSUMER_GROUP,
        "worker-1",
        Claim::Takeover { reserved: &[] },
    );
    let held = Default::default();
    let mut entries = reader.next(10, &held).await.expect("read");
    if entries.is_empty() {
        entries = reader.next(10, &held).await.expect("read");
    }
    let delivery = Delivery::from_entry(PNID, Lane::Bulk, entries.into_iter().next().expect("one"))
        .expect("a message");
    assert_eq!(delivery.message_id, queued);
    assert!(
        queue
            .record(
                PNID,
                &delivery,
                FIRST_ATTEMPT,
                Outcome::Sent { wamid: "wamid.A" },
                due_ms
            )
            .await
            .expect("recorded")
    );

    let view = queue
        .status_view(PNID, "wamid.A", None, MetaStatus::Failed)
        .await
        .expect("read")
        .expect("the message");
    let error = MetaError {
        code: 131000,
        title: "something went wrong".into(),
    };
    let requeue = gateway_queue::Requeue {
        wamid: "wamid.A",
        at_ms: due_ms + 1_000,
        now_ms: due_ms + 1_000,
        error: &error,
        due_ms: due_ms + 5_000,
        fallback: false,
        close_window: false,
    };
    queue
        .requeue_failed(PNID, &view, requeue)
        .await
        .expect("queued again");

    let scheduled: Vec<String> = redis::cmd("ZRANGE")
        .arg(gateway_queue::keys::scheduled(PNID))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("ZRANGE");
    assert_eq!(scheduled.len(), 1, "{scheduled:?}");
    let member: serde_json::Value = serde_json::from_str(&scheduled[0]).expect("JSON");
    assert_eq!(member["lane"], "b", "{member}");
    let (moved, _) = queue
        .promote_scheduled(PNID, due_ms + 5_000, 10)
        .await
        .expect("promoted");
    assert_eq!(moved, 1);
    let bulk_length: u64 = redis::cmd("XLEN")
        .arg(&bulk)
        .query_async(&mut conn)
        .await
        .expect("XLEN");
    assert_eq!(bulk_length, 1, "back in the bulk stream");
}

/// Queues one template message to `recipient` and records it sent, as the
/// worker holding it would.
async fn send_to(queue: &Queue, recipient: &str) {
    queue_template_to(queue, recipient).await;
    let delivery = read_by(queue, "owner").await;
    let wamid = format!("wamid.{recipient}");
    assert!(
        queue
            .record(
                PNID,
                &delivery,
                FIRST_ATTEMPT,
                Outcome::Sent { wamid: &wamid },
                1_000
            )
            .await
            .expect("recorded")
    );
}

/// A pair window longer than the two minutes kept by default (20 sends of
/// a burst at 6 s each, and more) keeps its sends for the next owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_is_remembered_for_the_next_owner_as_long_as_its_pair_window() {
    let redis = RedisServer::start();
    let five_minutes = Duration::from_secs(300);
    let long_window = redis.queue().remembering_recipients_for(five_minutes);
    let mut conn = long_window.connection();
    let (seconds, _): (i64, i64) = redis::cmd("TIME")
        .query_async(&mut conn)
        .await
        .expect("TIME");
    // Sent to 200 s ago by the previous owner: the long window still counts it.
    let _: i64 = redis::cmd("ZADD")
        .arg(gateway_queue::keys::recent_recipients(PNID))
        .arg((seconds - 200) * 1_000)
        .arg("+15550000001")
        .query_async(&mut conn)
        .await
        .expect("ZADD");

    send_to(&long_window, "+15550000002").await;
    let mut recent = long_window
        .recent_recipients(PNID, five_minutes)
        .await
        .expect("recent recipients");
    recent.sort();
    let names: Vec<&str> = recent.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(names, ["+15550000001", "+15550000002"]);
    assert!(
        recent[0].1 >= Duration::from_secs(199),
        "the old send is 200 s old: {recent:?}"
    );
    let just_now = long_window
        .recent_recipients(PNID, Duration::from_secs(6))
        .await
        .expect("recent recipients");
    assert_eq!(
        just_now.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
        ["+15550000002"],
        "a 6 s window reads only the send just made"
    );

    // With the default (two minutes), the next send lets the old one go.
    send_to(&redis.queue(), "+15550000003").await;
    let recent = long_window
        .recent_recipients(PNID, five_minutes)
        .await
        .expect("recent recipients");
    assert!(
        recent.iter().all(|(r, _)| r != "+15550000001"),
        "kept two minutes: {recent:?}"
    );
}
