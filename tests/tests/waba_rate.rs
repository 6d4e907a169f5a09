//! A WABA's own rate (`[[wabas]] rate_per_second`): its numbers' sends,
//! summed, never exceed it in any second, measured where Meta would (the
//! sandbox), while three workers join and hand the WABA over; the numbers share
//! it fairly; and they are owned together, by one worker.

use std::time::Duration;

use gateway_tests::{
    GatewayOptions, TestGateway, WABA, WorkerProcess, phone_number_id, rate_reports, send_counts,
    template_backlog, wait_until_every,
};

const BINARY: &str = env!("CARGO_BIN_EXE_gateway-under-test");
const NUMBERS: usize = 3;
const WABA_RATE: usize = 70;
const PER_NUMBER: usize = 500;

/// Waits until the sandbox accepted `expected` distinct messages (the cheap
/// counter first: copying the records often would starve the in-process
/// sandbox and bend its timestamps).
async fn wait_until_sent(gateway: &TestGateway, expected: usize, deadline: Duration) {
    wait_until_every(
        &format!("{expected} messages to reach the sandbox"),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wabas_numbers_share_its_rate_fairly_and_never_exceed_it_across_workers() {
    let gateway = TestGateway::start(GatewayOptions {
        senders: NUMBERS,
        rate_per_second: 70,
        start_worker: false,
        extra_toml: format!("[[wabas]]\nid = \"{WABA}\"\nrate_per_second = {WABA_RATE}\n"),
        ..Default::default()
    })
    .await;
    let ids = gateway
        .send_all(&template_backlog(NUMBERS, PER_NUMBER))
        .await;
    let total = ids.len();

    // One worker starts; two more join (the WABA may move to one of them);
    // the first stops (the WABA moves, if it had not, with its window's
    // sends). Three workers drain it.
    let mut first = gateway.spawn_worker(BINARY);
    wait_until_sent(&gateway, total / 5, Duration::from_secs(30)).await;
    let others: Vec<WorkerProcess> = (0..2).map(|_| gateway.spawn_worker(BINARY)).collect();
    wait_until_sent(&gateway, total / 2, Duration::from_secs(30)).await;
    let owners = gateway.lease_owners(NUMBERS).await;
    assert!(
        owners.iter().all(|o| o.is_some() && *o == owners[0]),
        "one worker owns all of the WABA's numbers: {owners:?}"
    );
    assert!(first.terminate(Duration::from_secs(20)), "a clean stop");
    wait_until_sent(&gateway, total, Duration::from_secs(60)).await;
    drop(others);

    let accepted = gateway.sandbox.accepted();
    let counts = send_counts(&accepted);
    assert_eq!(counts.len(), total, "every message went");
    assert!(counts.values().all(|n| *n == 1), "each once");
    let stats = gateway.sandbox.stats();
    assert_eq!(stats.rejections.get(&130429), None, "{stats:?}");

    // The WABA as one sender, measured as Meta measures a number.
    let as_one: Vec<_> = accepted
        .iter()
        .cloned()
        .map(|mut m| {
            m.phone_number_id = WABA.to_owned();
            m
        })
        .collect();
    let waba = rate_reports(&as_one)[WABA];
    println!("the WABA: {waba:?}");
    assert!(
        waba.max_in_one_second <= WABA_RATE,
        "{} sends of the WABA in one second",
        waba.max_in_one_second
    );
    let reports = rate_reports(&accepted);
    for n in 0..NUMBERS {
        let report = reports[&phone_number_id(n)];
        println!("number {n}: {report:?}");
        assert!(
            report.achieved_per_second >= 20.0,
            "number {n} got its share: {report:?}"
        );
    }
}
