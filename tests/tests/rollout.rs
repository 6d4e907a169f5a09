//! Graceful rollouts under load, against the sandbox at Meta's limits: a
//! worker sent SIGTERM hands its senders to the other worker within about
//! two seconds; a rolling restart of every worker loses nothing, sends
//! nothing twice and keeps every sender at its rate; an api sent SIGTERM
//! in the middle of a burst answers every request it took (202 only for
//! what is stored) and refuses the rest, none left hanging.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gateway_domain::rules::assignment::owner;
use gateway_tests::{
    GatewayOptions, KEY_ALL, TestGateway, WorkerProcess, phone_number_id, rate_reports,
    send_counts, template_backlog, wait_until, wait_until_every,
};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");
const RATE: usize = 70;

/// The workers registered as live.
async fn live_workers(gateway: &TestGateway) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(gateway_queue::keys::WORKERS)
        .arg(0)
        .arg(-1)
        .query_async(&mut gateway.redis().await)
        .await
        .expect("ZRANGE")
}

/// Waits until exactly `expected` workers are registered; returns them.
async fn wait_for_workers(gateway: &TestGateway, expected: usize) -> Vec<String> {
    wait_until_every(
        &format!("{expected} live workers"),
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            let live = live_workers(gateway).await;
            (live.len() == expected).then_some(live)
        },
    )
    .await
}

/// Waits until every sender has an owner among `workers`.
async fn wait_until_owned(gateway: &TestGateway, senders: usize, workers: &[String]) {
    wait_until_every(
        "every sender to be owned",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || async {
            let owners = gateway.lease_owners(senders).await;
            owners
                .iter()
                .all(|o| o.as_ref().is_some_and(|o| workers.contains(o)))
                .then_some(())
        },
    )
    .await;
}

/// SIGTERM on a blocking thread (the wait polls with sleeps), so that the
/// test keeps watching meanwhile; resolves to whether it exited in time.
fn terminate(mut worker: WorkerProcess, deadline: Duration) -> tokio::task::JoinHandle<bool> {
    tokio::task::spawn_blocking(move || worker.terminate(deadline))
}

/// Waits until the sandbox accepted `expected` distinct messages; polls
/// the cheap counter first (copying the records often would starve the
/// in-process sandbox and bend its timestamps).
async fn wait_until_sent(gateway: &TestGateway, expected: usize, deadline: Duration) {
    wait_until_every(
        "every message to reach the sandbox",
        deadline,
        Duration::from_millis(250),
        || async {
            let accepted = usize::try_from(gateway.sandbox.stats().accepted).unwrap_or(usize::MAX);
            (accepted >= expected && send_counts(&gateway.sandbox.accepted()).len() >= expected)
                .then_some(())
        },
    )
    .await;
}

/// Every id's record says `sent` (a few requests at a time).
async fn assert_all_sent(gateway: &TestGateway, ids: &[String]) {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in ids.chunks(ids.len().div_ceil(4).max(1)) {
        let (http, api, chunk) = (
            gateway.http.clone(),
            gateway.api_url.clone(),
            chunk.to_vec(),
        );
        tasks.spawn(async move {
            for id in chunk {
                let record: Value = http
                    .get(format!("{api}/messages/{id}"))
                    .bearer_auth(KEY_ALL)
                    .send()
                    .await
                    .expect("api answers")
                    .json()
                    .await
                    .expect("a record");
                assert_eq!(record["status"], "sent", "{id}: {record}");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("records checked");
    }
}

/// What the sandbox saw: each message once, no second above the rate, no 130429.
fn assert_limits_kept(gateway: &TestGateway, ids: &[String], senders: usize) {
    let accepted = gateway.sandbox.accepted();
    let counts = send_counts(&accepted);
    let twice: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "a graceful stop sent messages twice: {twice:?}"
    );
    let unknown = counts.keys().filter(|id| !ids.contains(id)).count();
    assert_eq!(unknown, 0, "the sandbox got messages nobody sent");
    let stats = gateway.sandbox.stats();
    assert_eq!(
        stats.rejections.get(&130429),
        None,
        "Meta's throughput limit was hit: {stats:?}"
    );
    let reports = rate_reports(&accepted);
    for s in 0..senders {
        let report = reports.get(&phone_number_id(s)).expect("the sender sent");
        println!("sender s{s}: {report:?}");
        assert!(
            report.max_in_one_second <= RATE,
            "s{s}: {} sends in one second",
            report.max_in_one_second
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_worker_hands_its_senders_over_within_two_seconds() {
    const SENDERS: usize = 6;
    let gateway = TestGateway::start(GatewayOptions {
        senders: SENDERS,
        start_worker: false,
        ..Default::default()
    })
    .await;
    let ids = gateway
        .send_all(&template_backlog(SENDERS, RATE * 20))
        .await;

    let first = gateway.spawn_worker(BINARY);
    let first_name = wait_for_workers(&gateway, 1).await.remove(0);
    wait_until_owned(&gateway, SENDERS, std::slice::from_ref(&first_name)).await;
    let second = gateway.spawn_worker(BINARY);
    let both = wait_for_workers(&gateway, 2).await;
    let second_name = both
        .into_iter()
        .find(|w| *w != first_name)
        .expect("the second worker");
    // Let the second worker take its share, and both send for a while.
    let sent_before = gateway.sandbox.stats().accepted;
    wait_until("both workers to send", Duration::from_secs(20), || async {
        (gateway.sandbox.stats().accepted > sent_before + 700).then_some(())
    })
    .await;
    let owners = gateway.lease_owners(SENDERS).await;
    let moving: Vec<usize> = (0..SENDERS)
        .filter(|&i| owners[i].as_deref() == Some(first_name.as_str()))
        .collect();
    println!("the first worker owns {moving:?} of {owners:?}");

    let stopping = Instant::now();
    let exited = terminate(first, Duration::from_secs(15));
    wait_until_every(
        "the second worker to own every sender",
        Duration::from_secs(10),
        Duration::from_millis(25),
        || async {
            let owners = gateway.lease_owners(SENDERS).await;
            owners
                .iter()
                .all(|o| o.as_deref() == Some(second_name.as_str()))
                .then_some(())
        },
    )
    .await;
    let handover = stopping.elapsed();
    println!("senders {moving:?} handed over in {handover:?}");
    // About two seconds: the stopping worker finishes its calls in flight
    // and frees its leases at once; the other sees it gone at its next
    // heartbeat (every second). A little slack for a busy 2-core machine.
    assert!(
        handover < Duration::from_millis(2_500),
        "the handover took {handover:?}"
    );
    assert!(
        exited.await.expect("terminate"),
        "the worker did not exit after SIGTERM"
    );

    wait_until_sent(&gateway, ids.len(), Duration::from_secs(120)).await;
    assert_all_sent(&gateway, &ids).await;
    drop(second);
    assert_limits_kept(&gateway, &ids, SENDERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_nothing_and_keeps_the_limits() {
    const SENDERS: usize = 6;
    let gateway = TestGateway::start(GatewayOptions {
        senders: SENDERS,
        start_worker: false,
        ..Default::default()
    })
    .await;
    let ids = gateway
        .send_all(&template_backlog(SENDERS, RATE * 25))
        .await;

    let mut workers = Vec::new();
    let mut names = Vec::new();
    for n in 1..=2 {
        workers.push(gateway.spawn_worker(BINARY));
        let live = wait_for_workers(&gateway, n).await;
        names.push(
            live.into_iter()
                .find(|w| !names.contains(w))
                .expect("the new worker"),
        );
    }
    wait_until_owned(&gateway, SENDERS, &names).await;

    // One by one: start the new worker, let it take its share, stop the old.
    for round in 0..2 {
        let sent_before = gateway.sandbox.stats().accepted;
        wait_until(
            "progress before the next step",
            Duration::from_secs(20),
            || async { (gateway.sandbox.stats().accepted > sent_before + 300).then_some(()) },
        )
        .await;
        let new = gateway.spawn_worker(BINARY);
        let live = wait_for_workers(&gateway, 3).await;
        let new_name = live
            .into_iter()
            .find(|w| !names.contains(w))
            .expect("the new worker");
        // Its share (as rendezvous hashing over the three gives it, maybe
        // none) moves to it at the others' next heartbeat.
        let three: Vec<String> = names.iter().chain([&new_name]).cloned().collect();
        let senders: Vec<String> = (0..SENDERS).map(phone_number_id).collect();
        wait_until_every(
            &format!("round {round}: the new worker to take its share"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async {
                let owners = gateway.lease_owners(SENDERS).await;
                senders
                    .iter()
                    .zip(&owners)
                    .all(|(sender, held)| held.as_deref() == owner(sender, &three))
                    .then_some(())
            },
        )
        .await;
        let old = workers.remove(0);
        let old_name = names.remove(0);
        let stopping = Instant::now();
        assert!(
            terminate(old, Duration::from_secs(15))
                .await
                .expect("terminate"),
            "round {round}: the old worker did not exit after SIGTERM"
        );
        println!(
            "round {round}: old worker stopped in {:?}",
            stopping.elapsed()
        );
        workers.push(new);
        names.push(new_name);
        let live = wait_for_workers(&gateway, 2).await;
        assert!(!live.contains(&old_name), "{old_name} still registered");
        wait_until_owned(&gateway, SENDERS, &names).await;
    }

    wait_until_sent(&gateway, ids.len(), Duration::from_secs(120)).await;
    assert_all_sent(&gateway, &ids).await;
    drop(workers);
    assert_limits_kept(&gateway, &ids, SENDERS);
}

/// How one `/send` during the api's shutdown ended.
enum Answer {
    Accepted(String),
    /// Any other status: the api refused it and said so.
    Refused(u16),
    /// The connection was refused or closed: the client knows it failed.
    Failed,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_api_answers_what_it_took_and_refuses_the_rest() {
    const CLIENTS: usize = 16;
    let gateway = TestGateway::start(GatewayOptions {
        senders: 2,
        start_worker: false,
        ..Default::default()
    })
    .await;
    let listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("addr")
    };
    let api = gateway.spawn_api(BINARY, listen);
    let url = format!("http://{listen}");
    let probe = reqwest::Client::new();
    wait_until(
        "the api process to answer",
        Duration::from_secs(20),
        || async {
            let ready = probe.get(format!("{url}/healthz")).send().await.ok()?;
            ready.status().is_success().then_some(())
        },
    )
    .await;

    // A burst from many clients, each sending until the api is gone.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (url, stop, accepted) = (url.clone(), stop.clone(), accepted.clone());
        clients.spawn(async move {
            // Deadline per request: an answer or an error, never a hang.
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            let mut answers = Vec::new();
            for i in 0.. {
                let body = json!({"from": format!("s{}", c % 2), "to": format!("+1650{:03}{i:04}", c),
                    "type": "template", "template": {"name": "hello_world", "language": {"code": "en_US"}}});
                let result = http
                    .post(format!("{url}/send"))
                    .bearer_auth(KEY_ALL)
                    .json(&body)
                    .send()
                    .await;
                let answer = match result {
                    Ok(response) if response.status() == 202 => {
                        let body: Value = response.json().await.unwrap_or(Value::Null);
                        match body["id"].as_str() {
                            Some(id) => Answer::Accepted(id.to_owned()),
                            None => panic!("a 202 without an id: {body}"),
                        }
                    }
                    Ok(response) => Answer::Refused(response.status().as_u16()),
                    Err(error) => {
                        assert!(!error.is_timeout(), "a request hung: {error}");
                        // A closed keep-alive connection, then a refused
                        // one: the api is gone.
                        if error.is_connect() {
                            assert!(stop.load(Ordering::Relaxed), "refused before the SIGTERM: {error}");
                            answers.push(Answer::Failed);
                            break;
                        }
                        Answer::Failed
                    }
                };
                if matches!(answer, Answer::Accepted(_)) {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                answers.push(answer);
                assert!(i < 1_000_000, "the api never went away");
            }
            answers
        });
    }

    wait_until("a burst under way", Duration::from_secs(30), || async {
        (accepted.load(Ordering::Relaxed) >= 300).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let stopping = Instant::now();
    let exited = terminate(api, Duration::from_secs(15));
    assert!(
        exited.await.expect("terminate"),
        "the api did not exit after SIGTERM"
    );
    println!("api stopped in {:?}", stopping.elapsed());

    let mut ids = Vec::new();
    let (mut refused, mut failed) = (Vec::new(), 0);
    let finished = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(done) = clients.join_next().await {
            for answer in done.expect("a client") {
                match answer {
                    Answer::Accepted(id) => ids.push(id),
                    Answer::Refused(status) => refused.push(status),
                    Answer::Failed => failed += 1,
                }
            }
        }
    })
    .await;
    assert!(finished.is_ok(), "a client was still waiting for an answer");
    println!(
        "{} accepted, {} refused ({refused:?}), {failed} failed",
        ids.len(),
        refused.len()
    );
    assert!(
        refused.iter().all(|s| *s == 503),
        "answers other than 202 and 503: {refused:?}"
    );
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an id answered twice");

    // Every 202 is in Redis (read through the api still running in-process).
    for id in &ids {
        let (status, record) = gateway.message(id).await;
        assert_eq!(
            status, 200,
            "{id} was answered 202 but is not stored: {record}"
        );
        assert_eq!(record["status"], "queued", "{record}");
    }
    let stored = gateway.queue_len(0).await + gateway.queue_len(1).await;
    assert!(
        stored >= ids.len() as u64,
        "{stored} stored for {} accepted",
        ids.len()
    );
}
