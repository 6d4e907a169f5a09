//! A record comes from the worker that holds the message: a stale owner's
//! late record (its lease lost, the message finished by the next owner)
//! changes nothing.

use std::time::Duration;

use gateway_domain::Lane;
use gateway_queue::{Claim, Delivery, Outcome, Progress, Queue};
use gateway_tests::RedisServer;

const PNID: &str = "1000000000";

async fn queue(redis: &RedisServer) -> Queue {
    gateway_queue::connect(
        &redis.url(),
        Duration::from_secs(1),
        Duration::from_secs(2),
        Duration::from_secs(3_600),
    )
    .expect("queue")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owners_late_record_changes_nothing() {
    let redis = RedisServer::start();
    let queue = queue(&redis).await;
    let mut conn = queue.connection();
    let stream = gateway_queue::keys::queue(PNID);
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg(&[
            "snd",
            "s0",
            "cli",
            "billing",
            "rcpt",
            "+16505551234",
            "kind",
            "template",
            "body",
            "{}",
        ])
        .query_async(&mut conn)
        .await
        .expect("XADD");

    let stale = read_by(&queue, "old-owner").await;
    // The next owner takes the message over, sends and records it.
    let current = read_by(&queue, "new-owner").await;
    assert_eq!(current.entry_id, stale.entry_id);
    let progress = Progress {
        attempts: 1,
        fallback_used: false,
    };
    let sent = |wamid| Outcome::Sent { wamid };
    assert!(
        queue
            .record(PNID, &current, progress, sent("wamid.NEW"), 1_000)
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
                .record(PNID, &stale, progress, outcome, 2_000)
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
