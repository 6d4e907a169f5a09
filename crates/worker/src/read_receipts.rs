//! Sends one read receipt (with the typing indicator, if asked) for a
//! sender this worker owns. The dispatcher decides when: before the
//! sender's messages, within its rate (see `sender_state`). A receipt is
//! sent once and not retried: Meta's answer is counted and logged, and a
//! 130429 lowers the sender's rate as for a message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_config::SenderSettings;
use gateway_domain::rules::{ErrorClass, classify_code};
use gateway_graph::GraphError;
use gateway_queue::ReadRequest;

use crate::Worker;
use crate::lease::Lease;

/// What came of a receipt's call, for the state machine.
pub(crate) struct ReadDone {
    /// How long Meta took to answer, if it did.
    pub answered_in: Option<Duration>,
    /// Meta answered 130429.
    pub throttled: bool,
}

pub(crate) async fn mark_read(
    worker: Arc<Worker>,
    sender: Arc<SenderSettings>,
    read: ReadRequest,
    lease: Lease,
) -> ReadDone {
    let count = |outcome: &str| {
        worker
            .metrics
            .read_receipts
            .with_label_values(&[sender.name.as_str(), outcome])
            .inc();
    };
    let not_sent = ReadDone {
        answered_in: None,
        throttled: false,
    };
    let Some(endpoint) = worker.endpoints.get(&sender.phone_number_id) else {
        count("failed");
        return not_sent;
    };
    if !lease.covers(worker.settings.worker.longest_call) {
        count("failed");
        return not_sent;
    }
    let started = Instant::now();
    let result = worker
        .graph
        .mark_read(endpoint, &read.message_id, read.typing)
        .await;
    let took = started.elapsed();
    match result {
        Ok(()) => {
            count("sent");
            ReadDone {
                answered_in: Some(took),
                throttled: false,
            }
        }
        Err(error) => {
            count("failed");
            tracing::warn!(sender = %sender.name, message_id = %read.message_id, %error, "a read receipt failed");
            let answered = matches!(error, GraphError::Meta { .. } | GraphError::Http { .. });
            ReadDone {
                answered_in: answered.then_some(took),
                throttled: matches!(error, GraphError::Meta { code, .. }
                    if classify_code(code) == ErrorClass::SenderThroughput),
            }
        }
    }
}
