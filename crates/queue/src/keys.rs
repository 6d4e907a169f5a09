//! The Redis key layout, in one place. Every key of a sender carries the
//! sender's phone_number_id as a hash tag (`{106540352242922}`), so all of a
//! sender's keys live in one Redis Cluster slot: a script may touch several
//! of them atomically, and a cluster spreads senders over its masters.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `gw:{pnid}:queue` | stream | transactional messages waiting to be sent, read by the `workers` group |
//! | `gw:{pnid}:bulk` | stream | bulk messages, sent when no transactional message waits |
//! | `gw:{pnid}:scheduled` | sorted set | messages held until their `send_after` (score, Unix ms), as JSON |
//! | `gw:{pnid}:msg:<id>` | hash | a message's record: status, wamid, attempts, error, history; expires after `redis.record_ttl_seconds` |
//! | `gw:{pnid}:fate:<id>` | string | decides between a worker's send and a client's cancel: `sending` while an attempt is under way, `cancelled` once cancelled (then as long as the record); see the `cancel` module |
//! | `gw:{pnid}:wamid:<wamid>` | string | the message id a wamid belongs to, for status webhooks |
//! | `gw:{pnid}:idem:<client>:<key>` | string | `<message id> <payload fingerprint>` for 24 h |
//! | `gw:{pnid}:repeat:<request>` | string | on a cluster, the message id one enqueue request stored, so that the driver's resend of it stores nothing more; 10 minutes |
//! | `gw:{pnid}:dlq` | stream | failed messages with reason, code and attempts, for replay |
//! | `gw:{pnid}:lease` | string | the worker that drains this sender; valid while that worker's liveness key covering it lives |
//! | `gw:{pnid}:parked:t`, `gw:{pnid}:parked:b` | sorted set | recipients with parked messages (transactional, bulk), by when the oldest may go (Unix ms); see the `parked` module |
//! | `gw:{pnid}:parked:t:<recipient>` (`:b:`) | sorted set | that recipient's parked entry ids, oldest first |
//! | `gw:{pnid}:sendlog` | string | the sends of the last second, left by a worker handing the sender over: `<Redis time ms>\|<ms ago>,<ms ago>,...`, read against Redis's clock, never a host's |
//! | `gw:{pnid}:paused` | string | why the sender is paused (JSON); absent when it is not |
//! | `gw:{pnid}:quality` | string | the number's quality rating as a worker last read it from Meta (`YELLOW`, `RED`, `UNKNOWN`; absent: `GREEN` or never rated); the owner watches it to hold bulk on RED |
//! | `gw:{pnid}:conversation:<id>` | string | a conversation Meta reported (conversation-based pricing) and the gateway counted; `redis.record_ttl_seconds` + 1 day |
//! | `gw:{pnid}:suppressed` | hash | `<recipient>\|marketing` and `<recipient>\|all`: suppressions (Meta's code, source, since, until) that make a message fail without a call; see the `suppressions` module |
//! | `gw:{pnid}:rate` | string | the rate the sender's owner keeps now (after a 130429, the throughput tier), for admission control; expires 15 s after the owner last published it |
//! | `gw:{pnid}:recipients` | sorted set | recipients messaged in the last two minutes, by last send (Redis time, ms), for the pair limit across owners |
//! | `gw:{pnid}:window:<recipient>` | string | the recipient's last inbound message (Unix ms); expires when their 24-hour window closes |
//! | `gw:{pnid}:reads` | list | read receipts (JSON) waiting for the sender's owner; at most 1,000, 1 hour after the last |
//! | `gw:{pnid}:inbound:<wamid>` | string | an inbound message already handled, so Meta's duplicates are not forwarded twice; 7 days |
//! | `gw:{pnid}:media:<media id>` | string | a media file the gateway uploaded for the sender (JSON: `expires_at_ms`, `mime_type`, `bytes`), so that `/send` refuses the id once Meta's 30 days are over; kept 30 days past that (see the `media` module) |
//! | `gw:{notify}:outbox`, `:retry`, `:dead` | stream, sorted set, stream | status events and inbound messages for the services: to deliver, to try again, given up on (see `gateway-notify`) |
//! | `gw:{client:<name>}:quota:day:<day>` | string | the client's messages on that UTC day (days since 1970), for its `per_day` quota |
//! | `gw:{client:<name>}:quota:second`, `:quota:seq` | sorted set, string | the client's messages of the last second (Redis time, ms), numbered by the counter, for its `rate_per_second` quota |
//! | `gw:{client:<name>}:quota:<pnid>:day:<day>`, `:second`, `:seq` | as above | the same through one sender (`sender_quotas`) |
//! | `gw:{portfolio:<id>}:users` | sorted set | users the portfolio's numbers started a conversation with (a template outside an open window) in its moving 24 h, by when (Unix ms), for the messaging-limit guard |
//! | `gw:{portfolio:<id>}:limit` | string | the portfolio's messaging limit as Meta last reported it (unique users per 24 h; absent: unknown or unlimited) |
//! | `gw:{waba:<id>}:templates` | hash | the WABA's template registry: `<name>\|<language>` → compact JSON (`{"category":"MARKETING","status":"APPROVED","parameters":{"header":1,"body":2,"buttons":[1,null]}}`), `#synced_ms` (the last complete sync from Meta, Unix ms; absent: never synced, nothing is refused at `/send`) and `#version` (changes with every write, so that readers reload only then); written by workers, read by the api; see the `templates` module |
//! | `gw:{waba:<id>}:templates:sync` | string | the worker syncing the WABA's registry from Meta; expires after the sync interval, so one worker syncs each WABA per interval |
//! | `gw:{waba:<id>}:lease`, `:sendlog` | string | for a WABA with a rate of its own (`[[wabas]]`): the worker that owns all its numbers, and the sends of its shared window left at a handover; as a sender's `lease` and `sendlog` |
//! | `gw:workers` | sorted set | live workers by last heartbeat (Unix ms); not per sender |
//! | `gw:worker:<id>` | string | a worker is alive, and its leases valid, while this key exists; renewed with each heartbeat, never recreated |
//! | `gw:worker:{<range tag>}:<id>` | string | the same on a Redis Cluster, one per range of 64 hash slots the worker holds senders in (see the `liveness` module) |
//! | `gw:events` | stream | webhook bodies as Meta posted them, signature checked, read by the `workers` group; not per sender, since a body may speak for several |

/// The consumer group every worker reads a sender's queue through.
pub const CONSUMER_GROUP: &str = "workers";

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL_MS: u64 = 24 * 3600 * 1000;

/// How long a request's repeat key is kept (a cluster resends within its
/// request deadline, seconds).
pub const REPEAT_TTL_MS: u64 = 10 * 60 * 1000;

/// Dead letters kept per sender before the oldest are trimmed.
pub const DEAD_LETTER_MAX_LEN: u64 = 100_000;

pub fn queue(phone_number_id: &str) -> String {
    format!("gw:{{{phone_number_id}}}:queue")
}

pub fn bulk(phone_number_id: &str) -> String {
    format!("gw:{{{phone_number_id}}}:bulk")
}

/// The stream a message of this lane waits in (scheduled ones, once due,
/// wait in the transactional stream unless they are bulk).
pub fn stream(phone_number_id: &str, lane: gateway_domain::Lane) -> String {
    match lane {
        gateway_domain::Lane::Bulk => bulk(phone_number_id),
        _ => queue(phone_number_id),
    }
}

pub fn scheduled(phone_number_id: &str) -> String {
    format!("gw:{{{phone_number_id}}}:scheduled")
}

pub fn record(phone_number_id: &str, message_id: &str) -> String {
    format!("gw:{{{phone_number_id}}}:msg:{message_id}")
}

/// A message's fate (with an empty id: the prefix `promote_scheduled.lua`
/// builds these keys from).
pub fn fate(phone_number_id: &str, message_id: &str) -> String {
    format!("gw:{{{phone_number_id}}}:fate:{message_id}")
}

pub fn wamid(phone_number_id: &str, wamid: &str) -> String {
    format!("gw:{{{phone_number_id}}}:wamid:{wamid}")
}

pub fn idempotency(phone_number_id: &str, client: &str, key: &str) -> String {
    format!("gw:{{{phone_number_id}}}:idem:{client}:{key}")
}

/// One enqueue request's own key on a cluster (see `enqueue.lua`).
pub fn repeat(phone_number_id: &str, request: &str) -> String {
    format!("gw:{{{phone_number_id}}}:repeat:{request}")
}

pub fn dead_letters(phone_number_id: &str) -> String {
    format!("gw:{{{phone_number_id}}}:dlq")
}

pub fn recent_recipients(phone_number_id: &str) -> String {
    format!("gw:{{{phone_number_id}}}:recipients")
}

/// How long a recipient stays in `recent_recipients` at least: `gateway
/// stats` counts the last minute's, and a pair window of up to 20 sends at
/// 6 s fits.
pub const RECENT_RECIPIENTS_MS: u64 = 120_000;

/// How long a recipient stays in `recent_recipients` when the pair limit
/// looks back over `pair_window`: a new owner must find every send the
/// window still counts.
pub fn recent_recipients_kept_ms(pair_window: std::time::Duration) -> u64 {
    u64::try_from(pair_window.as_millis())
        .unwrap_or(u64::MAX)
        .max(RECENT_RECIPIENTS_MS)
}

/// The index of a sender's parked recipients for one priority.
pub fn parked(phone_number_id: &str, lane: gateway_domain::Lane) -> String {
    format!("gw:{{{phone_number_id}}}:parked:{}", lane.code())
}

/// One recipient's parked entries (with an empty recipient: the prefix the
/// scripts build these keys from).
pub fn parked_recipient(
    phone_number_id: &str,
    lane: gateway_domain::Lane,
    recipient: &str,
) -> String {
    format!(
        "gw:{{{phone_number_id}}}:parked:{}:{recipient}",
        lane.code()
    )
}

/// A worker's liveness: its leases hold while this key exists.
pub fn worker(worker_id: &str) -> String {
    format!("gw:worker:{worker_id}")
}

/// A worker's liveness in one range of a cluster's hash slots (`tag`
/// hashes into the range).
pub fn worker_in(worker_id: &str, tag: &str) -> String {
    format!("gw:worker:{{{tag}}}:{worker_id}")
}

/// The id a limited WABA's lease (and its shared window's send log) is
/// kept under, beside the senders' (`lease`, `send_log`): its numbers are
/// owned together under it.
pub fn waba_lease_id(waba_id: &str) -> String {
    format!("waba:{waba_id}")
}

pub fn lease(phone_number_id: &str) -> String {
    format!("gw:{{{phone_number_id}}}:lease")
}

pub fn send_log(phone_number_id: &str) -> String {
    format!("gw:{{{phone_number_id}}}:sendlog")
}

pub fn paused(phone_number_id: &str) -> String {
    format!("gw:{{{phone_number_id}}}:paused")
}

/// The number's quality rating as last read from Meta.
pub fn quality(phone_number_id: &str) -> String {
    format!("gw:{{{phone_number_id}}}:quality")
}

/// A conversation already counted (see the `billing` module).
pub fn conversation(phone_number_id: &str, conversation_id: &str) -> String {
    format!("gw:{{{phone_number_id}}}:conversation:{conversation_id}")
}

/// The users a portfolio started conversations with in its moving 24 h.
pub fn portfolio_users(portfolio: &str) -> String {
    format!("gw:{{portfolio:{portfolio}}}:users")
}

/// The portfolio's messaging limit as Meta reports it.
pub fn portfolio_limit(portfolio: &str) -> String {
    format!("gw:{{portfolio:{portfolio}}}:limit")
}

/// A WABA's template registry (see the `templates` module).
pub fn templates(waba_id: &str) -> String {
    format!("gw:{{waba:{waba_id}}}:templates")
}

/// Held by the worker that syncs the WABA's registry this interval.
pub fn templates_sync(waba_id: &str) -> String {
    format!("gw:{{waba:{waba_id}}}:templates:sync")
}

/// The sender's suppressed recipients.
pub fn suppressed(phone_number_id: &str) -> String {
    format!("gw:{{{phone_number_id}}}:suppressed")
}

/// The rate a sender's owner keeps now (see `sender_load`).
pub fn sender_rate(phone_number_id: &str) -> String {
    format!("gw:{{{phone_number_id}}}:rate")
}

/// Where a client's quota keys start: all of its senders together, or
/// one sender (by phone_number_id).
fn client_quota(client: &str, sender: Option<&str>) -> String {
    match sender {
        None => format!("gw:{{client:{client}}}:quota"),
        Some(pnid) => format!("gw:{{client:{client}}}:quota:{pnid}"),
    }
}

/// A client's count of messages on UTC day `day` (days since 1970).
pub fn client_day(client: &str, sender: Option<&str>, day: i64) -> String {
    format!("{}:day:{day}", client_quota(client, sender))
}

/// A client's sends of the last second.
pub fn client_second(client: &str, sender: Option<&str>) -> String {
    format!("{}:second", client_quota(client, sender))
}

/// The counter that numbers a client's sends in [`client_second`].
pub fn client_sequence(client: &str, sender: Option<&str>) -> String {
    format!("{}:seq", client_quota(client, sender))
}

pub fn window(phone_number_id: &str, recipient: &str) -> String {
    format!("gw:{{{phone_number_id}}}:window:{recipient}")
}

/// Read receipts waiting for the sender's owner (see `read_receipts`).
pub fn reads(phone_number_id: &str) -> String {
    format!("gw:{{{phone_number_id}}}:reads")
}

pub fn inbound(phone_number_id: &str, wamid: &str) -> String {
    format!("gw:{{{phone_number_id}}}:inbound:{wamid}")
}

/// A media id the gateway uploaded for the sender (see `media`).
pub fn media(phone_number_id: &str, media_id: &str) -> String {
    format!("gw:{{{phone_number_id}}}:media:{media_id}")
}

/// How long a handled inbound wamid is remembered: Meta retries a webhook
/// for up to 7 days.
pub const INBOUND_SEEN_MS: u64 = 7 * 24 * 3600 * 1000;

/// Webhook bodies waiting to be processed.
pub const EVENTS: &str = "gw:events";

/// Live workers; the one key not tied to a sender.
pub const WORKERS: &str = "gw:workers";

/// The notification outbox (`gateway-notify`): status events and inbound
/// messages waiting to be delivered, or in flight. One hash tag for the
/// three, so its scripts run on one cluster slot.
pub const NOTIFY_OUTBOX: &str = "gw:{notify}:outbox";
/// Notifications waiting to be tried again (score: when, Unix ms).
pub const NOTIFY_RETRY: &str = "gw:{notify}:retry";
/// Notifications given up on, with attempts and last error, for replay.
pub const NOTIFY_DEAD: &str = "gw:{notify}:dead";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_recipients_are_kept_two_minutes_or_the_pair_window_if_longer() {
        let six_seconds = std::time::Duration::from_secs(6);
        assert_eq!(recent_recipients_kept_ms(six_seconds), 120_000);
        assert_eq!(recent_recipients_kept_ms(six_seconds * 45), 270_000);
    }

    /// Redis Cluster hashes only what is inside the first `{...}`.
    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').expect("tag opens");
        let close = key[open..].find('}').expect("tag closes") + open;
        &key[open + 1..close]
    }

    #[test]
    fn every_key_of_a_sender_shares_its_hash_tag() {
        let pnid = "106540352242922";
        for key in [
            queue(pnid),
            bulk(pnid),
            scheduled(pnid),
            record(pnid, "106540352242922-01JD3F6Q8Z1XK9V7M2T4R5N6PA"),
            wamid(pnid, "wamid.HBgL"),
            idempotency(pnid, "billing", "order-{7}"),
            dead_letters(pnid),
            lease(pnid),
            send_log(pnid),
            paused(pnid),
            quality(pnid),
            conversation(pnid, "4c1f0a9b2d3e4f5a"),
            recent_recipients(pnid),
            parked(pnid, gateway_domain::Lane::Bulk),
            parked_recipient(pnid, gateway_domain::Lane::Transactional, "+16505551234"),
            window(pnid, "+16505551234"),
            inbound(pnid, "wamid.HBgL"),
            reads(pnid),
            media(pnid, "1234567890"),
        ] {
            assert_eq!(hash_tag(&key), pnid, "{key}");
        }
    }

    #[test]
    fn a_waba_s_template_keys_share_its_hash_tag() {
        for key in [
            templates("102290129340398"),
            templates_sync("102290129340398"),
            lease(&waba_lease_id("102290129340398")),
            send_log(&waba_lease_id("102290129340398")),
        ] {
            assert_eq!(hash_tag(&key), "waba:102290129340398", "{key}");
        }
    }
}
