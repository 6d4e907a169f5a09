//! How a worker reads: woken by Redis instead of polling (a message to an
//! idle sender goes at once, and idle senders cost nothing), calls in
//! flight sized to Meta's answer time (a slow Meta still gets the full
//! rate), a read whose reply was lost recovered without a handover,
//! also when the worker never learnt that it was, a draining sender
//! reading in batches (not woken by its own sends), and a worker cut off
//! from Redis waiting without spinning.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use gateway_sandbox::Faults;
use gateway_tests::{
    GatewayOptions, TcpProxy, TestGateway, phone_number_id, rate_reports, send_counts,
    template_backlog, wait_until, wait_until_every,
};
use serde_json::json;

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");

fn template(from: &str, to: &str) -> serde_json::Value {
    json!({
        "from": from,
        "to": to,
        "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}},
    })
}

async fn wait_until_owned(gateway: &TestGateway, senders: usize) {
    wait_until_every(
        "every sender to be owned",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let owners = gateway.lease_owners(senders).await;
            owners.iter().all(Option::is_some).then_some(())
        },
    )
    .await;
}

/// Redis's count of commands run since its statistics were last reset,
/// by command.
async fn commands_run(gateway: &TestGateway) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut gateway.redis().await)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|f| f.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

async fn reset_command_counts(gateway: &TestGateway) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut gateway.redis().await)
        .await
        .expect("CONFIG RESETSTAT");
}

/// Waits until the worker has settled: no more than a handful of commands
/// in half a second.
async fn wait_until_quiet(gateway: &TestGateway) {
    wait_until_every(
        "the worker to settle",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let total: u64 = commands_run(gateway).await.values().sum();
            reset_command_counts(gateway).await;
            (total <= 12).then_some(())
        },
    )
    .await;
}

/// A gateway with `senders` senders and a worker that holds them all and
/// has nothing to do.
async fn idle_gateway(senders: usize) -> TestGateway {
    let gateway = TestGateway::start(GatewayOptions {
        senders,
        ..Default::default()
    })
    .await;
    wait_until_owned(&gateway, senders).await;
    wait_until_quiet(&gateway).await;
    gateway
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_an_idle_sender_is_sent_within_milliseconds() {
    const SENDERS: usize = 200;
    let gateway = idle_gateway(SENDERS).await;

    let mut latencies = Vec::new();
    for i in 0..20 {
        let sender = format!("s{}", i * 7 % SENDERS);
        let posted = SystemTime::now();
        let (status, body) = gateway
            .send(&template(&sender, &format!("+1650555{i:04}")))
            .await;
        assert_eq!(status, 202, "{body}");
        let id = body["id"].as_str().expect("id").to_owned();
        let at = wait_until(
            "the message to reach the sandbox",
            Duration::from_secs(5),
            || async {
                gateway
                    .sandbox
                    .accepted()
                    .into_iter()
                    .find(|m| m.biz_opaque_callback_data.as_deref() == Some(id.as_str()))
                    .map(|m| m.at)
            },
        )
        .await;
        latencies.push(at.duration_since(posted).unwrap_or_default());
        // Let the sender go idle again (its read comes back empty, it arms).
        wait_until_quiet(&gateway).await;
    }
    latencies.sort();
    println!("from POST to Meta: {latencies:?}");
    let slowest = latencies.last().copied().unwrap_or_default();
    assert!(
        slowest <= Duration::from_millis(50),
        "a message to an idle sender took {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_thousand_idle_senders_makes_almost_no_redis_calls() {
    const SENDERS: usize = 1_000;
    let gateway = idle_gateway(SENDERS).await;

    reset_command_counts(&gateway).await;
    // A measurement over a fixed span, not a wait for a condition.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let counts = commands_run(&gateway).await;
    let total: u64 = counts.values().sum();
    println!("commands in 10 s with {SENDERS} idle senders: {total} {counts:?}");
    // The worker's heartbeat, its key watcher's check, the stale-entry
    // looks of the shared streams: nothing per sender.
    assert!(
        total < 100,
        "{total} Redis commands in 10 s for {SENDERS} idle senders: {counts:?}"
    );

    // And the senders are awake: a message goes at once.
    let (status, body) = gateway.send(&template("s999", "+16505550000")).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    gateway
        .wait_for_status(&id, "sent", Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_meta_still_gets_each_senders_full_rate() {
    // Five senders at 70/s and 1.5 s per answer: 525 calls open at once.
    // Twice that keeps a 2-core machine (the sandbox in this process, the
    // worker, Redis) so busy that its stalls, not the gateway, fill a
    // window; `make bench` measures ten.
    const SENDERS: usize = 5;
    const RATE: usize = 70;
    const SECONDS: usize = 25;
    let gateway = TestGateway::start(GatewayOptions {
        senders: SENDERS,
        start_worker: false,
        ..Default::default()
    })
    .await;
    gateway.sandbox.set_faults(Faults {
        latency_ms: 1_500,
        ..Faults::default()
    });
    let ids = gateway
        .send_all(&template_backlog(SENDERS, RATE * SECONDS))
        .await;
    let mut gateway = gateway;
    gateway.start_worker().await;
    wait_until_every(
        "the backlog to reach the sandbox",
        Duration::from_secs(SECONDS as u64 * 3),
        Duration::from_millis(500),
        || async { (gateway.sandbox.stats().accepted >= ids.len() as u64).then_some(()) },
    )
    .await;

    let accepted = gateway.sandbox.accepted();
    let stats = gateway.sandbox.stats();
    assert_eq!(stats.rejections.get(&130429), None, "{stats:?}");
    assert!(send_counts(&accepted).values().all(|n| *n == 1));
    let reports = rate_reports(&accepted);
    for s in 0..SENDERS {
        let pnid = phone_number_id(s);
        let report = reports.get(&pnid).expect("the sender sent");
        // Steady state: from 4 s after the first send (the first call
        // probes a Meta that has not answered yet) to 1 s before the last.
        let mut times: Vec<SystemTime> = accepted
            .iter()
            .filter(|m| m.phone_number_id == pnid)
            .map(|m| m.at)
            .collect();
        times.sort();
        let (first, last) = (times[0], times[times.len() - 1]);
        let from = first + Duration::from_secs(4);
        let to = last - Duration::from_secs(1);
        let span = to.duration_since(from).unwrap_or_default().as_secs_f64();
        let steady = times.iter().filter(|t| **t >= from && **t < to).count() as f64 / span;
        println!("s{s}: {steady:.1}/s steady, {report:?}");
        assert!(
            steady >= 0.95 * RATE as f64,
            "s{s} reached {steady:.1} of {RATE} per second"
        );
        assert!(
            report.max_in_one_second <= RATE,
            "s{s}: {} sends in one second",
            report.max_in_one_second
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_whose_reply_was_lost_is_recovered_without_a_handover() {
    let mut gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let proxy = TcpProxy::start(
        format!("127.0.0.1:{}", gateway.redis.port())
            .parse()
            .expect("address"),
    )
    .await;
    gateway.start_worker_through(&proxy.url()).await;
    wait_until_owned(&gateway, 1).await;
    let owner = gateway.lease_owners(1).await;
    wait_until_quiet(&gateway).await;

    // Redis carries out the worker's next read of the queue, and the
    // worker never sees what it read.
    proxy.lose_next_reply_to(
        "XREADGROUP",
        &gateway_queue::keys::queue(&phone_number_id(0)),
    );
    let messages: Vec<_> = (0..20)
        .map(|i| template("s0", &format!("+1650555{i:04}")))
        .collect();
    let ids = gateway.send_all(&messages).await;
    wait_until_every(
        "every message to reach the sandbox",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async { (gateway.sandbox.stats().accepted >= ids.len() as u64).then_some(()) },
    )
    .await;

    assert_eq!(proxy.replies_lost(), 1, "the read's reply was lost");
    let counts = send_counts(&gateway.sandbox.accepted());
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "{id} was sent once");
    }
    assert_eq!(gateway.lease_owners(1).await, owner, "no handover");
    let lost = gateway
        .metrics
        .lease_changes
        .with_label_values(&["lost"])
        .get();
    assert_eq!(lost, 0, "the lease was never lost");
}

/// A cluster client resends a command whose connection broke: the first
/// read ran, the resent one finds nothing new, and the worker sees no
/// error at all. Here the first read is made for it, under its name, while
/// it is frozen; it must find those entries before it waits for more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_read_under_the_workers_name_without_its_knowing_are_still_sent() {
    let gateway = TestGateway::start(GatewayOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let worker = gateway.spawn_worker(BINARY);
    wait_until_owned(&gateway, 1).await;
    let first = gateway.send_all(&[template("s0", "+16505550000")]).await;
    gateway
        .wait_for_status(&first[0], "sent", Duration::from_secs(20))
        .await;
    wait_until_quiet(&gateway).await;

    let stream = gateway_queue::keys::queue(&phone_number_id(0));
    let group = gateway_queue::keys::CONSUMER_GROUP;
    let consumers: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&stream)
        .arg(group)
        .query_async(&mut gateway.redis().await)
        .await
        .expect("XINFO CONSUMERS");
    let name = consumers
        .consumers
        .into_iter()
        .map(|c| c.name)
        .find(|name| name != gateway_queue::PARKED_CONSUMER)
        .expect("the worker's consumer");

    worker.suspend();
    let messages: Vec<_> = (1..=5)
        .map(|i| template("s0", &format!("+1650555{i:04}")))
        .collect();
    let ids = gateway.send_all(&messages).await;
    let read: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg(&name)
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut gateway.redis().await)
        .await
        .expect("XREADGROUP");
    let taken: usize = read.keys.iter().map(|k| k.ids.len()).sum();
    assert_eq!(taken, ids.len(), "the read took every new message");
    worker.resume();

    for id in &ids {
        gateway
            .wait_for_status(id, "sent", Duration::from_secs(20))
            .await;
    }
    let counts = send_counts(&gateway.sandbox.accepted());
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "{id} was sent once");
    }
}

/// A sender that is draining reads its stream in batches: its own
/// acknowledgements of what it sent must not wake it into a read (and an
/// arming) per message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_sender_reads_in_batches() {
    const SENDERS: usize = 10;
    const EACH: usize = 350; // 5 s at 70/s
    // Idle first, so each sender is armed when its backlog comes.
    let gateway = idle_gateway(SENDERS).await;
    let ids = gateway.send_all(&template_backlog(SENDERS, EACH)).await;
    let accepted_at_least = |count: usize| {
        let gateway = &gateway;
        async move {
            wait_until_every(
                "sends to reach the sandbox",
                Duration::from_secs(60),
                Duration::from_millis(20),
                || async {
                    let accepted = gateway.sandbox.stats().accepted;
                    (accepted >= count as u64).then_some(accepted)
                },
            )
            .await
        }
    };
    // From 1 s into the drain to 4 s: past the first reads, and before
    // any sender reads its stream to the end (from then on each of its
    // last sends wakes it, as it must to be woken by a new message).
    let from = accepted_at_least(ids.len() / 5).await;
    reset_command_counts(&gateway).await;
    let to = accepted_at_least(ids.len() * 4 / 5).await;
    let counts = commands_run(&gateway).await;
    let of = |name: &str| counts.get(name).copied().unwrap_or(0);
    let messages = to - from;
    println!(
        "{messages} messages: {} reads, {} armings",
        of("xreadgroup"),
        of("type")
    );
    // A read takes at least half the sender's read-ahead (35 at 70/s).
    assert!(
        of("xreadgroup") <= messages / 16,
        "{} reads for {messages} messages",
        of("xreadgroup")
    );
    assert!(
        of("type") <= messages / 16,
        "{} armings for {messages} messages",
        of("type")
    );
    accepted_at_least(ids.len()).await;
}

/// CPU seconds (user and system) a process has used, from `/proc`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process runs");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    // The kernel's USER_HZ, 100 on every Linux this runs on.
    ticks / 100.0
}

/// A worker cut off from Redis retries its steps with a back-off: it does
/// not spin on a due time it cannot act on until Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cut_off_from_redis_waits_without_spinning() {
    const SENDERS: usize = 10;
    let mut gateway = TestGateway::start(GatewayOptions {
        senders: SENDERS,
        start_worker: false,
        ..Default::default()
    })
    .await;
    let worker = gateway.spawn_worker(BINARY);
    wait_until_owned(&gateway, SENDERS).await;
    gateway.send_all(&template_backlog(SENDERS, 20)).await;
    wait_until_every(
        "the first sends",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async { (gateway.sandbox.stats().accepted > 0).then_some(()) },
    )
    .await;

    gateway.redis.stop();
    let pid = worker.pid().expect("the worker runs");
    // A measurement over a fixed span, not a wait for a condition: past
    // the failures of the steps that were running, then 3 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_seconds(pid) - before;
    println!("{used:.2} s of CPU in 3 s without Redis");
    assert!(
        used < 0.5,
        "the worker used {used:.2} s of CPU in 3 s without Redis"
    );
}
