//! Observability shared by every process: the Prometheus metric families
//! (registered once, named by Prometheus conventions, labelled by sender and
//! error code, never by recipient or message id), the `/metrics` route, and
//! the `tracing` subscriber.

mod metrics;
mod process;
mod sender;
mod throttle;

pub use metrics::Metrics;
pub use process::PROCESS_FAMILY_NAMES;
pub use sender::SenderMetrics;
pub use throttle::LogThrottle;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

/// `GET /metrics` in the Prometheus text format.
pub fn metrics_routes<S: Clone + Send + Sync + 'static>(metrics: Metrics) -> Router<S> {
    Router::new()
        .route("/metrics", get(render))
        .with_state(metrics)
}

async fn render(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics.render(),
    )
}

/// Installs the global `tracing` subscriber: `RUST_LOG` filters (default
/// `info`), JSON lines when `json` is set (`--log-json`), text otherwise.
/// Safe to call more than once. The configuration's `[log]` section is
/// applied later, once it is loaded, with [`configure_logging`].
pub fn init_tracing(json: bool) {
    logging::init(json);
}

/// Applies the configuration's `[log]` section to the subscriber
/// [`init_tracing`] installed: `format` (`json` also when `--log-json`
/// was given) and `level` (filter directives; `RUST_LOG`, when set,
/// overrides them). Does nothing if no subscriber of this crate is installed.
pub fn configure_logging(json: bool, level: &str) {
    logging::configure(json, level);
}

mod logging {
    //! The subscriber: a registry with a reloadable filter and a reloadable
    //! format layer, so that the `[log]` section, read after the command line,
    //! can still choose both.

    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::{Layer, Layered, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Registry, reload};

    type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
    type FormatLayer = Box<dyn Layer<Filtered> + Send + Sync>;

    struct Handles {
        filter: reload::Handle<EnvFilter, Registry>,
        format: reload::Handle<FormatLayer, Filtered>,
        /// `--log-json` was given: JSON whatever the file says.
        json_flag: AtomicBool,
    }

    static HANDLES: OnceLock<Handles> = OnceLock::new();

    pub(super) fn init(json: bool) {
        let (filter, filter_handle) = reload::Layer::new(filter("info"));
        let (format, format_handle) =
            reload::Layer::new(format_layer(json, colours(), std::io::stderr));
        // `try_init` fails only when a subscriber is already set (tests, `dev`).
        if tracing_subscriber::registry()
            .with(filter)
            .with(format)
            .try_init()
            .is_ok()
        {
            let _ = HANDLES.set(Handles {
                filter: filter_handle,
                format: format_handle,
                json_flag: AtomicBool::new(json),
            });
        }
    }

    pub(super) fn configure(json: bool, level: &str) {
        let Some(handles) = HANDLES.get() else {
            return;
        };
        let json = json || handles.json_flag.load(Ordering::Relaxed);
        let _ = handles.filter.reload(filter(level));
        let _ = handles
            .format
            .reload(format_layer(json, colours(), std::io::stderr));
    }

    /// Colours only for a person at a terminal (and not with `NO_COLOR`).
    fn colours() -> bool {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
    }

    /// `RUST_LOG` when it is set and valid, else `level` (else `info`).
    fn filter(level: &str) -> EnvFilter {
        EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(level))
            .unwrap_or_else(|_| EnvFilter::new("info"))
    }

    /// Text or JSON lines on `writer`. JSON lines carry the fields of the
    /// spans they happen in (a message's `message_id` and `sender`).
    pub(super) fn format_layer<S, W>(
        json: bool,
        ansi: bool,
        writer: W,
    ) -> Box<dyn Layer<S> + Send + Sync>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        let layer = tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(ansi && !json)
            .with_writer(writer);
        if json {
            layer
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .boxed()
        } else {
            layer.boxed()
        }
    }

    #[cfg(test)]
    mod tests {
        use std::io::Write;
        use std::sync::{Arc, Mutex};

        use super::*;

        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);

        impl Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl<'w> MakeWriter<'w> for Captured {
            type Writer = Captured;
            fn make_writer(&'w self) -> Captured {
                self.clone()
            }
        }

        #[test]
        fn json_lines_carry_the_message_span() {
            let captured = Captured::default();
            let subscriber =
                tracing_subscriber::registry().with(format_layer(true, false, captured.clone()));
            tracing::subscriber::with_default(subscriber, || {
                let span = tracing::info_span!("message", message_id = %"m-1", sender = %"s0");
                let _entered = span.enter();
                tracing::info!(code = 131047, "send failed");
            });
            let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
            let line = text.lines().next().expect("one line");
            assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
            for part in [
                r#""level":"INFO""#,
                r#""message":"send failed""#,
                r#""code":131047"#,
                r#""span":{"#,
                r#""message_id":"m-1""#,
                r#""sender":"s0""#,
            ] {
                assert!(line.contains(part), "{part} missing from {line}");
            }
        }

        #[test]
        fn text_lines_name_the_span_fields() {
            let captured = Captured::default();
            let subscriber =
                tracing_subscriber::registry().with(format_layer(false, false, captured.clone()));
            tracing::subscriber::with_default(subscriber, || {
                let span = tracing::info_span!("message", message_id = %"m-1", sender = %"s0");
                let _entered = span.enter();
                tracing::warn!("send failed");
            });
            let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
            assert!(text.contains("message_id=m-1"), "{text}");
            assert!(text.contains("sender=s0"), "{text}");
        }
    }
}
