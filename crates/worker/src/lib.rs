//! The worker: owns a share of the senders (a lease per sender in Redis,
//! shared out by rendezvous hashing over the live workers) and drains each
//! owned sender through the Graph API at its exact rate, recording every
//! outcome in Redis.
//!
//! Modules: [`ownership`] decides which senders this worker drains;
//! [`dispatcher`] drains one sender: its decisions are a pure state machine
//! ([`sender_state`]: send window, pair limits, lanes, what is parked, calls
//! in flight), its Redis steps are in [`sender_io`] (read, take over, park,
//! unpark, wake-ups), and [`attempt`] makes one Graph API call (after the
//! window check) and records what it came to. An idle sender costs nothing:
//! the worker is woken by Redis ([`gateway_queue::KeyWatcher`]) when one of
//! its keys changes.
//! Beside that, every worker processes Meta's webhook events
//! ([`webhook_events`]: windows, statuses) and delivers what they tell the
//! internal services ([`notifications`], through the notify crate). A
//! worker also serves `/healthz`, `/readyz` and `/metrics` on its own address.

mod attempt;
mod costs;
mod depth;
mod dispatcher;
mod lanes;
mod lease;
mod messaging_limit;
mod ops_routes;
mod ownership;
mod read_receipts;
mod sender_health;
mod sender_io;
mod sender_state;
mod suppressions;
mod templates;
mod waba_rate;
mod webhook_events;

pub use ops_routes::ops_router;

use std::collections::HashMap;
use std::sync::Arc;

use gateway_config::Settings;
pub(crate) use gateway_domain::clock::unix_ms;
use gateway_domain::rules::RetryPolicy;
use gateway_graph::{GraphClient, SenderEndpoint};
use gateway_notify::{
    CallbackRules, Deliveries, DeliveryPolicy, Notifier, NotifyMetrics, Outbox, Transport,
};
use gateway_queue::{KeyWatcher, Queue};
use gateway_telemetry::Metrics;
use tokio_util::sync::CancellationToken;

/// What every task of a worker shares.
pub struct Worker {
    pub(crate) settings: Arc<Settings>,
    pub(crate) queue: Queue,
    /// Wakes the worker's tasks when Redis keys they wait on change.
    pub(crate) watcher: KeyWatcher,
    pub(crate) graph: GraphClient,
    pub(crate) metrics: Metrics,
    pub(crate) retry_policy: RetryPolicy,
    /// This worker's name in the registry, on its leases and as the
    /// consumer in every sender's group.
    pub(crate) consumer: String,
    /// Permits for Graph API calls in flight, shared by all senders.
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
    /// Each sender's send URL and authorization, by phone_number_id; a
    /// sender without a usable token has none and is paused when it sends.
    pub(crate) endpoints: HashMap<String, SenderEndpoint>,
    /// Fallback templates known unusable, throughput levels seen.
    pub(crate) sender_health: Arc<sender_health::SenderHealth>,
    /// Which senders have suppressed recipients.
    pub(crate) suppression_watch: suppressions::SuppressionWatch,
    /// The WABAs' template registries (see [`templates`]).
    pub(crate) templates: gateway_queue::TemplateCache,
}

impl Worker {
    /// Counts a message of `client` that Meta accepted. The label is a
    /// configured client's name (else `other`): what a stream entry says
    /// cannot grow the label set.
    pub(crate) fn count_sent_for(&self, client: &str) {
        let client = if self.settings.clients.iter().any(|c| c.name == client) {
            client
        } else {
            "other"
        };
        self.metrics.client_sent.with_label_values(&[client]).inc();
    }

    /// Must be called within a Tokio runtime (the key watcher starts its task).
    pub fn new(
        settings: Arc<Settings>,
        queue: Queue,
        graph: GraphClient,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let redis = &settings.redis;
        let watcher = KeyWatcher::open(&redis.url, redis.connect_timeout, redis.response_timeout)?;
        let retry_policy = RetryPolicy {
            max_attempts: settings.worker.max_attempts,
            ..RetryPolicy::default()
        };
        let mut endpoints = HashMap::new();
        for sender in &settings.senders {
            let Some(token) = &sender.access_token else {
                continue;
            };
            match graph.endpoint(&sender.phone_number_id, token) {
                Ok(endpoint) => {
                    endpoints.insert(sender.phone_number_id.clone(), endpoint);
                }
                Err(error) => tracing::error!(sender = %sender.name, %error, "sender cannot send"),
            }
        }
        metrics
            .calls_in_flight_limit
            .set(i64::try_from(settings.worker.max_in_flight).unwrap_or(i64::MAX));
        // Suppressed messages, read receipts and holds are counted from 0, so that an
        // alert's increase() sees the first.
        for sender in &settings.senders {
            costs::register(&metrics, &sender.name);
            for code in [131050, 131049, 131026] {
                metrics
                    .suppressed
                    .with_label_values(&[sender.name.as_str(), &code.to_string()]);
            }
            for outcome in ["sent", "failed"] {
                metrics
                    .read_receipts
                    .with_label_values(&[sender.name.as_str(), outcome]);
            }
        }
        for sender in settings
            .senders
            .iter()
            .filter(|s| settings.portfolio_of(s).is_some())
        {
            metrics
                .held
                .with_label_values(&[sender.name.as_str(), messaging_limit::HELD_REASON]);
        }
        let templates =
            gateway_queue::TemplateCache::new(queue.clone(), gateway_queue::TEMPLATE_REFRESH);
        Ok(Self {
            endpoints,
            in_flight: Arc::new(tokio::sync::Semaphore::new(settings.worker.max_in_flight)),
            settings,
            queue,
            watcher,
            graph,
            metrics,
            retry_policy,
            consumer: consumer_name(),
            templates,
            sender_health: Arc::default(),
            suppression_watch: suppressions::SuppressionWatch::default(),
        })
    }

    /// Works until `shutdown` is cancelled, then finishes the sends in
    /// flight and hands every sender over.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let worker = Arc::new(self);
        tracing::info!(worker = %worker.consumer, senders = worker.settings.senders.len(), "worker started");
        worker
            .metrics
            .senders_configured
            .set(i64::try_from(worker.settings.senders.len()).unwrap_or(i64::MAX));
        let notify_metrics = NotifyMetrics::register(worker.metrics.registry())?;
        let outbox = Outbox::new(worker.queue.connection())
            .with_max_backlog(worker.settings.notify.max_backlog, &notify_metrics);
        let notifier = Arc::new(Notifier::new(outbox.clone(), &worker.settings));
        let notify = &worker.settings.notify;
        let policy = DeliveryPolicy {
            max_attempts: notify.max_attempts,
            initial_backoff: notify.initial_backoff,
            max_backoff: notify.max_backoff,
            timeout: notify.timeout,
            ..DeliveryPolicy::default()
        };
        // Callbacks kept to `[callbacks]`; subscribers trusted (see
        // gateway_notify's transport module).
        let callbacks = &worker.settings.callbacks;
        let http = Transport::new(
            CallbackRules {
                require_https: callbacks.require_https,
                allow_private_addresses: callbacks.allow_private_addresses,
                max_response_bytes: callbacks.max_response_bytes,
            },
            notify.timeout,
        )?;
        let deliveries = tokio::spawn(gateway_notify::run(
            Deliveries {
                outbox,
                http,
                signers: gateway_notify::signers(&worker.settings),
                policy,
                consumer: worker.consumer.clone(),
                metrics: notify_metrics,
                watcher: worker.watcher.clone(),
            },
            shutdown.clone(),
        ));
        let events = tokio::spawn(webhook_events::run(
            worker.clone(),
            notifier,
            shutdown.clone(),
        ));
        let depths = tokio::spawn(depth::report_depths(worker.clone(), shutdown.clone()));
        let health = tokio::spawn(sender_health::run(worker.clone(), shutdown.clone()));
        let suppressed = tokio::spawn(suppressions::watch(worker.clone(), shutdown.clone()));
        let registries = tokio::spawn(templates::run(worker.clone(), shutdown.clone()));
        ownership::run(worker.clone(), shutdown).await;
        let _ = tokio::join!(depths, events, deliveries, health, suppressed, registries);
        tracing::info!(worker = %worker.consumer, "worker stopped");
        Ok(())
    }
}

/// `<host>-<pid>-<random>`: unique per process, readable in `XINFO CONSUMERS`.
fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
    let suffix = ulid::Ulid::new().to_string();
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &suffix[suffix.len() - 6..]
    )
}
