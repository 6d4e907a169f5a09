//! Where deliveries may connect, and the HTTP clients that keep to it
//! (`[callbacks]`): a `callback_url` comes from a client's request, so it
//! must not be able to make a worker call loopback, private, link-local or
//! cloud-metadata addresses (guarantee 9), however its host is written or
//! whatever its name resolves to.
//!
//! Decisions:
//! - **Two kinds of destination, two clients.** A notification whose signer
//!   is a subscriber's (`subscriber:<name>`) goes to a URL ops configured:
//!   trusted, usually an internal address, so it is resolved normally and
//!   only `require_https` applies (checked when the configuration loads).
//!   Every other signer (`client:<name>`, a message's `callback_url`) is a
//!   callback, also a signer this code does not know yet: what is not known
//!   to be trusted is guarded.
//! - **The checked address is the one connected to.** Unless
//!   `allow_private_addresses`, callbacks go through a client whose
//!   resolver ([`GuardedResolver`]) resolves the name at delivery and hands
//!   the connector only the addresses outside the refused ranges
//!   ([`gateway_domain::rules::address_range`]); with none left, the
//!   request fails with a [`Refusal`] before any connection. There is no
//!   second lookup to race (no DNS-rebinding gap). An IP-literal host never
//!   reaches a resolver, so [`Transport::check`] judges it before the
//!   request, with the scheme (`require_https`) and credentials in the URL:
//!   `/send` refuses all three already, but a notification stored before
//!   the configuration changed may not meet them. The guarded client uses
//!   no proxy: through one, the proxy would resolve and connect, out of
//!   the check's reach. With `allow_private_addresses`, callbacks use the
//!   subscribers' client.
//! - **A refusal is final**: the notification is not sent and goes to the
//!   dead stream at once with the reason (retrying cannot change the
//!   configuration; after fixing it, replay the dead letters), counted in
//!   `gateway_notifications_refused_total{reason}` and logged with the host
//!   and the address, never the URL's path or query.
//! - **No redirects** for any delivery: a `3xx` is the receiver's answer,
//!   and following it would take a callback wherever the receiver points
//!   (an internal address included). It counts as a failed attempt and is
//!   given up on at once, like a refusal, rather than retried: the same URL
//!   would answer the same; fix it and replay.
//! - **Answers are read at most `max_response_bytes`**, then dropped,
//!   never kept: a short answer lets the connection be reused, a longer
//!   (or announced longer) one closes it.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use gateway_domain::rules::address_range::{self, RefusedRange};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;

use crate::Notification;

/// The signer prefix of a configured subscriber; see the module doc.
const SUBSCRIBER_SIGNER_PREFIX: &str = "subscriber:";

/// What a callback may reach (`[callbacks]`). The default is production's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRules {
    /// A callback must be `https://`.
    pub require_https: bool,
    /// Callbacks may reach loopback, private, link-local and metadata
    /// addresses (a local receiver in development).
    pub allow_private_addresses: bool,
    /// A receiver's answer is read at most this far.
    pub max_response_bytes: usize,
}

impl Default for CallbackRules {
    fn default() -> Self {
        Self {
            require_https: true,
            allow_private_addresses: false,
            max_response_bytes: 65_536,
        }
    }
}

/// Whom a notification goes to, by its signer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// A configured subscriber: trusted.
    Subscriber,
    /// A message's `callback_url` (or any signer not a subscriber's): guarded.
    Callback,
}

impl Destination {
    pub(crate) fn of(notification: &Notification) -> Self {
        if notification.signer.starts_with(SUBSCRIBER_SIGNER_PREFIX) {
            Self::Subscriber
        } else {
            Self::Callback
        }
    }
}

/// Why a callback was not sent. Carries no path, query or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("refused: not https (callbacks.require_https is on)")]
    NotHttps,
    #[error("refused: the URL carries a user name or password")]
    Userinfo,
    #[error(
        "refused: {address} is in the {range} range (callbacks.allow_private_addresses is off)"
    )]
    Address {
        address: IpAddr,
        range: RefusedRange,
    },
    #[error(
        "refused: {host} resolves only to refused addresses, e.g. {address} in the {range} \
         range (callbacks.allow_private_addresses is off)"
    )]
    Resolved {
        host: String,
        address: IpAddr,
        range: RefusedRange,
    },
}

impl Refusal {
    /// The metric label: bounded.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::NotHttps => REFUSED_NOT_HTTPS,
            Self::Userinfo => REFUSED_USERINFO,
            Self::Address { .. } | Self::Resolved { .. } => REFUSED_PRIVATE_ADDRESS,
        }
    }

    /// The refusal behind a failed request, if its resolver refused.
    pub(crate) fn behind(error: &reqwest::Error) -> Option<Self> {
        let mut cause = std::error::Error::source(error);
        while let Some(c) = cause {
            if let Some(refusal) = c.downcast_ref::<Self>() {
                return Some(refusal.clone());
            }
            cause = c.source();
        }
        None
    }
}

/// `gateway_notifications_refused_total{reason}` label values.
pub(crate) const REFUSED_PRIVATE_ADDRESS: &str = "private_address";
pub(crate) const REFUSED_NOT_HTTPS: &str = "not_https";
pub(crate) const REFUSED_USERINFO: &str = "userinfo";
pub(crate) const REFUSED_REASONS: [&str; 3] =
    [REFUSED_PRIVATE_ADDRESS, REFUSED_NOT_HTTPS, REFUSED_USERINFO];

/// The HTTP clients deliveries use (see the module doc); cheap to clone.
#[derive(Debug, Clone)]
pub struct Transport {
    subscribers: reqwest::Client,
    callbacks: reqwest::Client,
    rules: CallbackRules,
}

impl Transport {
    /// Clients whose requests take at most `timeout` (connecting and the
    /// answer included), callbacks kept to `rules`.
    pub fn new(rules: CallbackRules, timeout: Duration) -> Result<Self, reqwest::Error> {
        Self::with_lookup(rules, timeout, Arc::new(SystemLookup))
    }

    /// As [`Transport::new`], names resolved by `lookup`.
    pub(crate) fn with_lookup(
        rules: CallbackRules,
        timeout: Duration,
        lookup: Arc<dyn Lookup>,
    ) -> Result<Self, reqwest::Error> {
        let builder = || {
            reqwest::Client::builder()
                .timeout(timeout)
                .redirect(redirect::Policy::none())
        };
        let subscribers = builder().build()?;
        let callbacks = if rules.allow_private_addresses {
            subscribers.clone()
        } else {
            builder()
                .no_proxy()
                .dns_resolver(GuardedResolver { lookup })
                .build()?
        };
        Ok(Self {
            subscribers,
            callbacks,
            rules,
        })
    }

    /// Checks what can be known before the request: the scheme, credentials
    /// and an IP-literal host of a callback (names are judged as they
    /// resolve). Subscribers pass.
    pub(crate) fn check(&self, to: Destination, url: &reqwest::Url) -> Result<(), Refusal> {
        if to == Destination::Subscriber {
            return Ok(());
        }
        if self.rules.require_https && url.scheme() != "https" {
            return Err(Refusal::NotHttps);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Userinfo);
        }
        if self.rules.allow_private_addresses {
            return Ok(());
        }
        let address = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) | None => return Ok(()),
        };
        match address_range::refused_range(address) {
            Some(range) => Err(Refusal::Address { address, range }),
            None => Ok(()),
        }
    }

    /// The client for `to`.
    pub(crate) fn client(&self, to: Destination) -> &reqwest::Client {
        match to {
            Destination::Subscriber => &self.subscribers,
            Destination::Callback => &self.callbacks,
        }
    }

    /// Reads at most `max_response_bytes` of an answer and drops it.
    pub(crate) async fn discard(&self, mut response: reqwest::Response) {
        let max = self.rules.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|length| length > u64::try_from(max).unwrap_or(u64::MAX))
        {
            return;
        }
        let mut read = 0_usize;
        while read < max {
            match response.chunk().await {
                Ok(Some(chunk)) => read = read.saturating_add(chunk.len()),
                Ok(None) | Err(_) => return,
            }
        }
    }
}

/// Resolves a host name to addresses (the system's resolver, or a test's).
pub(crate) trait Lookup: Send + Sync + 'static {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
}

/// `getaddrinfo`, through Tokio's blocking pool.
struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(
        &self,
        host: String,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Resolves a callback's host and keeps only the addresses a callback may
/// reach; with none left, fails with [`Refusal::Resolved`].
struct GuardedResolver {
    lookup: Arc<dyn Lookup>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let lookup = self.lookup.lookup(host.clone());
        Box::pin(async move {
            let resolved = lookup.await?;
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|&address| match address_range::refused_range(address) {
                    Some(range) => {
                        refused.get_or_insert((address, range));
                        false
                    }
                    None => true,
                })
                // Port 0: the connector puts the URL's port in.
                .map(|address| SocketAddr::new(address, 0))
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some((address, range))) => Err(Box::new(Refusal::Resolved {
                    host,
                    address,
                    range,
                }) as _),
                (true, None) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the name resolved to no address",
                )) as _),
                (false, _) => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Answers from a table, as DNS would.
    struct Table(HashMap<&'static str, Vec<IpAddr>>);

    impl Lookup for Table {
        fn lookup(
            &self,
            host: String,
        ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
            let answer = self.0.get(host.as_str()).cloned().unwrap_or_default();
            Box::pin(async move { Ok(answer) })
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP address")
    }

    fn guarded(lookup: Table) -> Transport {
        let rules = CallbackRules {
            require_https: false,
            ..CallbackRules::default()
        };
        Transport::with_lookup(rules, Duration::from_secs(2), Arc::new(lookup)).expect("client")
    }

    fn notification(signer: &str) -> Notification {
        Notification {
            url: "https://hooks.example.com/".into(),
            signer: signer.into(),
            body: "{}".into(),
        }
    }

    /// A loopback server answering `200` to every request, counting them.
    async fn counting_server() -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                let mut buffer = [0_u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        (port, count)
    }

    #[test]
    fn only_subscribers_are_trusted() {
        assert_eq!(
            Destination::of(&notification("subscriber:crm")),
            Destination::Subscriber
        );
        for signer in ["client:billing", "unknown", "", "Subscriber:crm"] {
            assert_eq!(
                Destination::of(&notification(signer)),
                Destination::Callback,
                "{signer}"
            );
        }
    }

    #[tokio::test]
    async fn ip_literals_scheme_and_credentials_are_checked_before_sending() {
        let transport =
            Transport::new(CallbackRules::default(), Duration::from_secs(1)).expect("transport");
        let check = |to, url: &str| transport.check(to, &reqwest::Url::parse(url).expect("url"));
        assert_eq!(
            check(Destination::Callback, "https://hooks.example.com/"),
            Ok(())
        );
        assert_eq!(
            check(Destination::Callback, "https://93.184.216.34/"),
            Ok(())
        );
        assert_eq!(
            check(Destination::Callback, "http://hooks.example.com/"),
            Err(Refusal::NotHttps)
        );
        assert_eq!(
            check(Destination::Callback, "https://u:p@hooks.example.com/"),
            Err(Refusal::Userinfo)
        );
        for url in [
            "https://127.0.0.1:8443/x",
            "https://169.254.169.254/latest",
            "https://[::ffff:10.0.0.1]/",
            "https://0x7f.1/",
        ] {
            let refused = check(Destination::Callback, url).expect_err(url);
            assert_eq!(refused.reason(), REFUSED_PRIVATE_ADDRESS, "{url}");
        }
        // Subscribers are configured by ops: not checked here.
        assert_eq!(check(Destination::Subscriber, "http://10.0.0.1/"), Ok(()));

        let local = Transport::new(
            CallbackRules {
                require_https: false,
                allow_private_addresses: true,
                ..CallbackRules::default()
            },
            Duration::from_secs(1),
        )
        .expect("transport");
        let url = reqwest::Url::parse("http://127.0.0.1:8080/").expect("url");
        assert_eq!(local.check(Destination::Callback, &url), Ok(()));
    }

    #[tokio::test]
    async fn a_name_resolving_only_to_refused_addresses_is_never_connected_to() {
        let (port, connections) = counting_server().await;
        let transport = guarded(Table(HashMap::from([
            ("rebound.example.com", vec![ip("127.0.0.1"), ip("::1")]),
            ("metadata.example.com", vec![ip("169.254.169.254")]),
        ])));
        for host in ["rebound.example.com", "metadata.example.com"] {
            let error = transport
                .client(Destination::Callback)
                .post(format!("http://{host}:{port}/events"))
                .send()
                .await
                .expect_err("refused");
            let refusal = Refusal::behind(&error).expect("a refusal behind the error");
            assert_eq!(refusal.reason(), REFUSED_PRIVATE_ADDRESS);
            assert!(refusal.to_string().contains(host), "{refusal}");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn refused_addresses_are_dropped_and_the_others_used() {
        let resolver = GuardedResolver {
            lookup: Arc::new(Table(HashMap::from([(
                "mixed.example.com",
                vec![ip("10.0.0.1"), ip("93.184.216.34"), ip("fd00::1")],
            )]))),
        };
        let name: Name = "mixed.example.com".parse().expect("name");
        let addrs: Vec<SocketAddr> = resolver.resolve(name).await.expect("resolves").collect();
        assert_eq!(addrs, vec![SocketAddr::new(ip("93.184.216.34"), 0)]);

        let name: Name = "nowhere.example.com".parse().expect("name");
        let Err(error) = resolver.resolve(name).await else {
            panic!("no address")
        };
        assert!(error.downcast_ref::<Refusal>().is_none());
    }

    #[tokio::test]
    async fn allowed_private_addresses_are_called() {
        let (port, connections) = counting_server().await;
        let transport = Transport::with_lookup(
            CallbackRules {
                require_https: false,
                allow_private_addresses: true,
                ..CallbackRules::default()
            },
            Duration::from_secs(2),
            Arc::new(Table(HashMap::new())),
        )
        .expect("transport");
        let response = transport
            .client(Destination::Callback)
            .post(format!("http://127.0.0.1:{port}/events"))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200);
        transport.discard(response).await;
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }
}
