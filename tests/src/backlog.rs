//! Template messages in bulk, for the tests that need a backlog.

use serde_json::{Value, json};

/// `per_sender` template messages for each of senders `s0`, `s1`, ...,
/// interleaved, over enough recipients (1,000 per sender) that Meta's pair
/// limit is never the bottleneck.
pub fn template_backlog(senders: usize, per_sender: usize) -> Vec<Value> {
    let mut messages = Vec::with_capacity(senders * per_sender);
    for i in 0..per_sender {
        for s in 0..senders {
            messages.push(json!({
                "from": format!("s{s}"),
                "to": format!("+1650{:07}", s * 10_000 + i % 1_000),
                "type": "template",
                "template": {"name": "hello_world", "language": {"code": "en_US"}},
            }));
        }
    }
    messages
}
