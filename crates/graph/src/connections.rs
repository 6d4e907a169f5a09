//! When a call's connection was opened. A call on a kept connection
//! leaves at once; one that must open a connection first (TCP, and TLS
//! to Meta) leaves a handshake later, while the calls after it may find
//! kept connections and overtake it. A sender's send window must count a
//! call from when it really left, or Meta sees it in one second with the
//! calls after it: the connector tells whoever made the call, through
//! [`on_connected`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

tokio::task_local! {
    static CONNECTED: Box<dyn Fn() + Send + Sync>;
}

/// Runs `call` (a Graph call), calling `connected` when a connection the
/// call had to open is open. A connection opened for the call but handed
/// to another one (the pool's race) is not reported.
pub async fn on_connected<F: Future>(
    connected: impl Fn() + Send + Sync + 'static,
    call: F,
) -> F::Output {
    CONNECTED.scope(Box::new(connected), call).await
}

/// The connector layer that reports each opened connection to the call
/// whose task opened it.
#[derive(Clone, Copy)]
pub(crate) struct ReportConnected;

impl<S> Layer<S> for ReportConnected {
    type Service = Reporting<S>;

    fn layer(&self, connector: S) -> Reporting<S> {
        Reporting(connector)
    }
}

#[derive(Clone)]
pub(crate) struct Reporting<S>(S);

impl<S, Target> Service<Target> for Reporting<S>
where
    S: Service<Target>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, target: Target) -> Self::Future {
        let connecting = self.0.call(target);
        Box::pin(async move {
            let connected = connecting.await;
            if connected.is_ok() {
                // Outside any call's scope (the pool finishes a connection
                // in the background): nobody to tell.
                let _ = CONNECTED.try_with(|report| report());
            }
            connected
        })
    }
}
