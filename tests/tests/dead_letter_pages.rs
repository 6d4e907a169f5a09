//! Dead letters are listed, replayed and purged a page at a time (a sender
//! may hold 100,000; none of these loads them all at once): with 2,500 of
//! them, of two clients and two codes, every filter holds across the page
//! boundaries, each letter is replayed or purged exactly once, and a
//! replayed message is queued again under its own id.

use std::collections::HashSet;

use gateway_domain::{Lane, MessageId};
use gateway_queue::{Claim, DeadLetterFilter, Delivery, Outcome, Progress, Queue};
use gateway_tests::RedisServer;

const PNID: &str = "1000000000";
const LETTERS: usize = 2_500;

/// Client of the `i`th message: every fifth is "b"'s, the others "a"'s.
fn client_of(i: usize) -> &'static str {
    if i.is_multiple_of(5) { "b" } else { "a" }
}

/// Meta's code the `i`th message failed with.
fn code_of(i: usize) -> i64 {
    if i % 2 == 1 { 132001 } else { 131026 }
}

/// Queues `LETTERS` messages and fails each for good through the worker's
/// own path (`Queue::record` with `Outcome::Failed`), which dead-letters
/// them. Returns the message ids in order.
async fn fail_into_dead_letters(queue: &Queue) -> Vec<MessageId> {
    let stream = gateway_queue::keys::queue(PNID);
    let mut conn = queue.connection();
    let mut pipe = redis::pipe();
    for i in 0..LETTERS {
        let recipient = format!("+1650555{i:04}");
        pipe.cmd("XADD").arg(&stream).arg("*").arg(&[
            ("snd", "s0"),
            ("cli", client_of(i)),
            ("rcpt", recipient.as_str()),
            ("kind", "template"),
            ("body", "{}"),
        ]);
    }
    let _: Vec<String> = pipe.query_async(&mut conn).await.expect("XADD");

    let mut reader = queue.consumer(
        &stream,
        gateway_queue::keys::CONSUMER_GROUP,
        "worker-1",
        Claim::Takeover { reserved: &[] },
    );
    let mut ids = Vec::with_capacity(LETTERS);
    while ids.len() < LETTERS {
        let entries = reader.read_new(500).await.expect("read");
        assert!(!entries.is_empty(), "read {} of {LETTERS}", ids.len());
        for entry in entries {
            let delivery =
                Delivery::from_entry(PNID, Lane::Transactional, entry).expect("a message");
            let i = ids.len();
            assert_eq!(delivery.client, client_of(i));
            let outcome = Outcome::Failed {
                code: code_of(i),
                title: "failed",
                reason: "permanent_error",
            };
            let progress = Progress {
                attempts: 1,
                fallback_used: false,
            };
            assert!(
                queue
                    .record(PNID, &delivery, progress, outcome, 1_700_000_000_000)
                    .await
                    .expect("recorded")
            );
            ids.push(delivery.message_id);
        }
    }
    ids
}

async fn xlen(queue: &Queue, key: &str) -> usize {
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut queue.connection())
        .await
        .expect("XLEN")
}

fn filter(client: Option<&str>, code: Option<i64>) -> DeadLetterFilter {
    DeadLetterFilter {
        code,
        ids: None,
        client: client.map(str::to_owned),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_dead_letters_are_listed_replayed_and_purged_in_pages() {
    let redis = RedisServer::start();
    let queue = redis.queue();
    let ids = fail_into_dead_letters(&queue).await;
    let dead_key = gateway_queue::keys::dead_letters(PNID);
    let stream = gateway_queue::keys::queue(PNID);
    assert_eq!(xlen(&queue, &dead_key).await, LETTERS);
    assert_eq!(xlen(&queue, &stream).await, 0);

    // Listing: across pages, in order, filtered by client, and cut at the limit.
    let a_ids: Vec<&str> = (0..LETTERS)
        .filter(|i| client_of(*i) == "a")
        .map(|i| ids[i].as_str())
        .collect();
    let listed = queue
        .dead_letters(PNID, &filter(Some("a"), None), usize::MAX)
        .await
        .expect("list");
    let listed_ids: Vec<&str> = listed.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(listed_ids, a_ids);
    assert!(listed.iter().all(|l| l.client == "a"));
    let first = queue
        .dead_letters(PNID, &filter(Some("a"), None), 1_500)
        .await
        .expect("list");
    assert_eq!(first.len(), 1_500);
    assert_eq!(first[1_499].id, a_ids[1_499]);

    // Replay: "a"'s 132001s only, every one of them once, across pages.
    let chosen: Vec<usize> = (0..LETTERS)
        .filter(|i| client_of(*i) == "a" && code_of(*i) == 132001)
        .collect();
    assert_eq!(chosen.len(), 1_000);
    let replayed = queue
        .replay_dead_letters(PNID, &filter(Some("a"), Some(132001)), 1_700_000_100_000)
        .await
        .expect("replay");
    assert_eq!(replayed, chosen.len());
    assert_eq!(xlen(&queue, &dead_key).await, LETTERS - chosen.len());
    assert_eq!(xlen(&queue, &stream).await, chosen.len());
    // Queued again under their own ids, and nothing else was.
    let requeued: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async(&mut queue.connection())
        .await
        .expect("XRANGE");
    let requeued: HashSet<String> = requeued
        .ids
        .into_iter()
        .filter_map(|e| e.get::<String>("id"))
        .collect();
    let expected: HashSet<String> = chosen.iter().map(|i| ids[*i].as_str().to_owned()).collect();
    assert_eq!(requeued, expected);
    for i in [chosen[0], chosen[999], 0, 2] {
        let record = queue.message(&ids[i]).await.expect("read").expect("record");
        let status = if chosen.contains(&i) {
            "queued"
        } else {
            "failed"
        };
        assert_eq!(record.status.as_str(), status, "message {i}");
    }
    // Replayed once: a second replay finds none of them.
    let again = queue
        .replay_dead_letters(PNID, &filter(Some("a"), Some(132001)), 1_700_000_200_000)
        .await
        .expect("replay");
    assert_eq!(again, 0);

    // Purge: "b"'s, all 500 of them, across pages; none that failed before
    // a time earlier than all of them.
    let none = queue
        .purge_dead_letters(PNID, &filter(Some("b"), None), Some(1_600_000_000_000))
        .await
        .expect("purge");
    assert_eq!(none, 0);
    let purged = queue
        .purge_dead_letters(PNID, &filter(Some("b"), None), None)
        .await
        .expect("purge");
    assert_eq!(purged, LETTERS / 5);
    let left = queue
        .dead_letters(PNID, &DeadLetterFilter::default(), usize::MAX)
        .await
        .expect("list");
    assert_eq!(left.len(), LETTERS - chosen.len() - LETTERS / 5);
    assert!(left.iter().all(|l| l.client == "a" && l.code == 131026));

    // Unfiltered, everything that is left.
    let replayed = queue
        .replay_dead_letters(PNID, &DeadLetterFilter::default(), 1_700_000_300_000)
        .await
        .expect("replay");
    assert_eq!(replayed, left.len());
    assert_eq!(xlen(&queue, &dead_key).await, 0);
    assert_eq!(xlen(&queue, &stream).await, chosen.len() + left.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_dead_letter_stream_replays_and_purges_nothing() {
    let redis = RedisServer::start();
    let queue = redis.queue();
    let all = DeadLetterFilter::default();
    assert_eq!(
        queue
            .replay_dead_letters(PNID, &all, 1_700_000_000_000)
            .await
            .expect("replay"),
        0
    );
    assert_eq!(
        queue
            .purge_dead_letters(PNID, &all, None)
            .await
            .expect("purge"),
        0
    );
    assert!(
        queue
            .dead_letters(PNID, &all, 10)
            .await
            .expect("list")
            .is_empty()
    );
}
