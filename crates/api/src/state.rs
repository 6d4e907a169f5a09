//! What every request handler shares: the settings, the senders by name and
//! by phone_number_id, the client keys, the queue and the metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gateway_config::{SenderSettings, Settings};
use gateway_queue::Queue;
use gateway_telemetry::{LogThrottle, Metrics};

use crate::auth::ClientKeys;

/// Shared by every request; one reference count to bump per request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub(crate) settings: Arc<Settings>,
    pub(crate) senders: HashMap<String, Arc<SenderSettings>>,
    pub(crate) clients: ClientKeys,
    pub(crate) queue: Queue,
    pub(crate) metrics: Metrics,
    /// A full webhook backlog refuses every webhook: one warning per
    /// interval says so (the counter has the number).
    pub(crate) backlog_warnings: LogThrottle,
}

/// At most one warning about a full webhook backlog per this long.
const BACKLOG_WARNING_EVERY: Duration = Duration::from_secs(10);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(settings: Arc<Settings>, queue: Queue, metrics: Metrics) -> Self {
        let mut senders = HashMap::new();
        for sender in &settings.senders {
            senders.insert(sender.name.clone(), sender.clone());
            senders.insert(sender.phone_number_id.clone(), sender.clone());
        }
        Self(Arc::new(Shared {
            clients: ClientKeys::new(&settings.clients),
            senders,
            settings,
            queue,
            metrics,
            backlog_warnings: LogThrottle::new(BACKLOG_WARNING_EVERY),
        }))
    }

    /// The sender a request names by name or phone_number_id.
    pub(crate) fn sender(&self, name_or_id: &str) -> Option<&Arc<SenderSettings>> {
        self.senders.get(name_or_id)
    }
}
