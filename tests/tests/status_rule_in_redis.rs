//! The status script in Redis follows the domain's rule: a status from
//! Meta moves a message only to a later status, whatever it was before.

use gateway_domain::webhook::MetaStatus;
use gateway_domain::{MessageId, MessageStatus};
use gateway_queue::{StatusChange, StatusResult};
use gateway_tests::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_moves_status_exactly_when_the_domain_rule_says_so() {
    let redis = RedisServer::start();
    let queue = redis.queue();
    let mut conn = queue.connection();
    let pnid = "1000000000";
    let meta = [
        MetaStatus::Sent,
        MetaStatus::Delivered,
        MetaStatus::Read,
        MetaStatus::Failed,
    ];
    for (i, from) in MessageStatus::ALL.into_iter().enumerate() {
        for (j, to) in meta.into_iter().enumerate() {
            let id = MessageId::parse(&format!("{pnid}-{}-{}", 1_700_000_000_000u64 + i as u64, j))
                .expect("id");
            let key = gateway_queue::keys::record(pnid, id.as_str());
            let _: () = redis::cmd("HSET")
                .arg(&key)
                .arg(&["status", from.as_str(), "wamid", "wamid.X", "history", "[]"])
                .query_async(&mut conn)
                .await
                .expect("hset");
            let apply = |now_ms| {
                queue.apply_status(
                    pnid,
                    &id,
                    StatusChange {
                        wamid: "wamid.X",
                        status: to,
                        at_ms: 1_700_000_001_000,
                        now_ms,
                        error: None,
                        reason: "permanent_error",
                    },
                )
            };
            let result = apply(1_700_000_001_000).await.expect("applied");
            let expected = if from.may_become(to.message_status()) {
                StatusResult::Moved
            } else {
                StatusResult::Recorded
            };
            assert_eq!(
                result,
                expected,
                "{} then Meta's {}",
                from.as_str(),
                to.as_str()
            );
            let status: String = redis::cmd("HGET")
                .arg(&key)
                .arg("status")
                .query_async(&mut conn)
                .await
                .expect("hget");
            let now = if expected == StatusResult::Moved {
                to.as_str()
            } else {
                from.as_str()
            };
            assert_eq!(status, now);
            // Meta sending it again changes nothing.
            let again = apply(1_700_000_002_000).await.expect("applied");
            assert_eq!(again, StatusResult::Duplicate);
        }
    }
}
