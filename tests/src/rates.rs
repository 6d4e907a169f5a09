//! What the sandbox saw, measured the way Meta would: per sender, the most
//! sends in any one-second window, and the rate achieved while draining.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use gateway_sandbox::AcceptedMessage;

#[derive(Debug, Clone, Copy)]
pub struct RateReport {
    pub sends: usize,
    /// The most sends in any window [t, t + 1 s).
    pub max_in_one_second: usize,
    /// Where the first such window starts, after the first send.
    pub busiest_from: Duration,
    /// Sends per second between the first and the last send.
    pub achieved_per_second: f64,
}

/// One report per phone_number_id.
pub fn rate_reports(accepted: &[AcceptedMessage]) -> HashMap<String, RateReport> {
    let mut times: HashMap<String, Vec<SystemTime>> = HashMap::new();
    for message in accepted {
        times
            .entry(message.phone_number_id.clone())
            .or_default()
            .push(message.at);
    }
    times
        .into_iter()
        .map(|(pnid, mut at)| {
            at.sort();
            let (mut max, mut busiest_from) = (0, Duration::ZERO);
            let mut start = 0;
            for end in 0..at.len() {
                while at[end].duration_since(at[start]).unwrap_or_default()
                    >= Duration::from_secs(1)
                {
                    start += 1;
                }
                if end - start + 1 > max {
                    max = end - start + 1;
                    busiest_from = at[start].duration_since(at[0]).unwrap_or_default();
                }
            }
            let span = match (at.first(), at.last()) {
                (Some(first), Some(last)) => last
                    .duration_since(*first)
                    .unwrap_or_default()
                    .as_secs_f64(),
                _ => 0.0,
            };
            let achieved = if span > 0.0 {
                (at.len() - 1) as f64 / span
            } else {
                0.0
            };
            (
                pnid,
                RateReport {
                    sends: at.len(),
                    max_in_one_second: max,
                    busiest_from,
                    achieved_per_second: achieved,
                },
            )
        })
        .collect()
}

/// How many times each message id (biz_opaque_callback_data) reached the sandbox.
pub fn send_counts(accepted: &[AcceptedMessage]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for message in accepted {
        if let Some(id) = &message.biz_opaque_callback_data {
            *counts.entry(id.clone()).or_insert(0) += 1;
        }
    }
    counts
}
