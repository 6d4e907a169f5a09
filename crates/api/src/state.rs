//! What every request handler shares: the settings, the senders by name and
//! by phone_number_id, the client keys, the queue, the Graph API client
//! (for media), the notifier (for cancelled messages) and the metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gateway_config::{SenderSettings, Settings};
use gateway_graph::{GraphClient, GraphError};
use gateway_notify::{Notifier, Outbox};
use gateway_queue::{Queue, TEMPLATE_REFRESH, TemplateCache};
use gateway_telemetry::{LogThrottle, Metrics};

use crate::ApiError;
use crate::admission::Admission;
use crate::auth::{Client, ClientKeys};
use gateway_domain::FieldError;

/// Shared by every request; one reference count to bump per request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub(crate) settings: Arc<Settings>,
    pub(crate) senders: HashMap<String, Arc<SenderSettings>>,
    pub(crate) clients: ClientKeys,
    pub(crate) queue: Queue,
    pub(crate) metrics: Metrics,
    /// Each sender's last known load, for admission control.
    pub(crate) admission: Admission,
    /// The WABAs' template registries, as `/send` checks templates.
    pub(crate) templates: TemplateCache,
    /// Media uploads and downloads go to Meta from the api itself.
    pub(crate) graph: GraphClient,
    /// A cancelled message's status event comes from the api.
    pub(crate) notifier: Notifier,
    /// A full webhook backlog refuses every webhook: one warning per
    /// interval says so (the counter has the number).
    pub(crate) backlog_warnings: LogThrottle,
}

/// The `reason` label values of `gateway_client_messages_refused_total`.
const REFUSAL_REASONS: [&str; 4] = [
    "queue_full",
    "sender_paused",
    "client_rate_limited",
    "client_daily_quota",
];

/// Graph API connections the api keeps open (media transfers at once).
const GRAPH_CONNECTIONS: usize = 64;

/// The `outcome` label values of `gateway_media_total`, by direction.
const MEDIA_OUTCOMES: [(&str, &[&str]); 2] = [
    ("upload", &["ok", "unsupported_type", "too_large", "failed"]),
    ("download", &["ok", "not_found", "failed"]),
];

/// The `by` label values of `gateway_messages_cancelled_total`.
pub(crate) const CANCELLED_BY: [&str; 2] = ["request", "bulk"];

/// At most one warning about a full webhook backlog per this long.
const BACKLOG_WARNING_EVERY: Duration = Duration::from_secs(10);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(
        settings: Arc<Settings>,
        queue: Queue,
        metrics: Metrics,
    ) -> Result<Self, GraphError> {
        let graph = GraphClient::new(
            &settings.graph.base_url,
            &settings.graph.version,
            settings.graph.timeout,
            GRAPH_CONNECTIONS,
        )?;
        let mut senders = HashMap::new();
        for sender in &settings.senders {
            senders.insert(sender.name.clone(), sender.clone());
            senders.insert(sender.phone_number_id.clone(), sender.clone());
        }
        // Refusals are counted from 0, so that an alert's increase() sees the first.
        for sender in &settings.senders {
            for code in [
                "template_unknown",
                "template_not_approved",
                "template_language",
                "template_parameters",
            ] {
                metrics
                    .template_refusals
                    .with_label_values(&[sender.name.as_str(), code]);
            }
        }
        for sender in &settings.senders {
            for (direction, outcomes) in MEDIA_OUTCOMES {
                for outcome in outcomes {
                    metrics
                        .media
                        .with_label_values(&[sender.name.as_str(), direction, outcome]);
                }
            }
        }
        for sender in &settings.senders {
            for by in CANCELLED_BY {
                metrics
                    .cancelled
                    .with_label_values(&[sender.name.as_str(), by]);
            }
        }
        for client in &settings.clients {
            for reason in REFUSAL_REASONS {
                metrics
                    .client_refused
                    .with_label_values(&[client.name.as_str(), reason]);
            }
        }
        let notifier = Notifier::new(
            Outbox::new(queue.connection()).capped(settings.notify.max_backlog),
            &settings,
        );
        Ok(Self(Arc::new(Shared {
            notifier,
            clients: ClientKeys::new(&settings.clients),
            admission: Admission::new(&settings.senders),
            templates: TemplateCache::new(queue.clone(), TEMPLATE_REFRESH),
            senders,
            settings,
            queue,
            metrics,
            backlog_warnings: LogThrottle::new(BACKLOG_WARNING_EVERY),
            graph,
        })))
    }

    /// The phone_number_ids whose messages `client` may look through: its
    /// own senders, or every sender for an admin.
    pub(crate) fn senders_seen_by(&self, client: &Client) -> Vec<String> {
        if client.admin {
            self.settings
                .senders
                .iter()
                .map(|s| s.phone_number_id.clone())
                .collect()
        } else {
            client.senders.clone()
        }
    }

    /// The phone_number_ids a request covers: the sender it names as
    /// `from` (which the client must be allowed, unless it is an admin), or
    /// every sender the client sees.
    pub(crate) fn senders_named(
        &self,
        client: &Client,
        from: Option<&str>,
    ) -> Result<Vec<String>, ApiError> {
        let Some(name) = from else {
            return Ok(self.senders_seen_by(client));
        };
        let sender = self.sender(name).ok_or_else(|| {
            FieldError::new(
                "from",
                "unknown_sender",
                format!("no sender is named {name:?}"),
            )
        })?;
        if !client.admin && !client.may_use(&sender.phone_number_id) {
            return Err(ApiError::Forbidden {
                field: "from",
                message: format!("client {} may not use {}", client.name, sender.name),
            });
        }
        Ok(vec![sender.phone_number_id.clone()])
    }

    /// The one sender a request is about: the one it names as `from`, or
    /// the client's only sender.
    pub(crate) fn one_sender(
        &self,
        client: &Client,
        from: Option<&str>,
    ) -> Result<String, ApiError> {
        let mut senders = self.senders_named(client, from)?;
        match (senders.pop(), senders.is_empty()) {
            (Some(pnid), true) => Ok(pnid),
            _ => Err(FieldError::missing("from").into()),
        }
    }

    /// The sender a request names by name or phone_number_id.
    pub(crate) fn sender(&self, name_or_id: &str) -> Option<&Arc<SenderSettings>> {
        self.senders.get(name_or_id)
    }
}

/// A recipient named in a path: a phone number (any common spelling) or a
/// business-scoped user id; errors name the field `recipient`.
pub(crate) fn recipient_in_path(text: &str) -> Result<gateway_domain::Recipient, FieldError> {
    gateway_domain::Recipient::from_fields(Some(text), None).map_err(|mut e| {
        e.field = "recipient".into();
        e
    })
}
