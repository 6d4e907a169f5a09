//! Client authentication: `Authorization: Bearer <client key>`, compared in
//! constant time against every configured key, and the rule that a client
//! may use only the senders listed for it.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use gateway_config::ClientSettings;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

pub(crate) struct ClientKeys {
    clients: Vec<(Vec<u8>, Client)>,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub(crate) struct Client(Arc<ClientInfo>);

/// The client's settings (its key left out).
#[derive(Debug)]
pub(crate) struct ClientInfo {
    pub name: String,
    /// phone_number_ids this client may send from.
    pub senders: Vec<String>,
    /// Sees and acts on every client's messages.
    pub admin: bool,
    /// Quotas, all of its senders together.
    pub rate_per_second: Option<u32>,
    pub per_day: Option<u64>,
    /// Quotas through one sender, by phone_number_id.
    pub sender_quotas: Vec<(String, gateway_config::Quota)>,
    /// Hosts its `callback_url`s may name (see `ClientSettings`).
    pub callback_hosts: Vec<String>,
}

impl std::ops::Deref for Client {
    type Target = ClientInfo;
    fn deref(&self) -> &ClientInfo {
        &self.0
    }
}

impl Client {
    pub fn may_use(&self, phone_number_id: &str) -> bool {
        self.senders.iter().any(|s| s == phone_number_id)
    }

    /// Whether this client may see and act on a message of sender
    /// `phone_number_id` sent by client `owner`: its own, on one of its
    /// senders; an admin, any message of any sender. Anything else is
    /// answered as if it did not exist.
    pub fn sees(&self, phone_number_id: &str, owner: &str) -> bool {
        self.admin || (owner == self.name && self.may_use(phone_number_id))
    }

    /// The client whose messages this one sees, as a dead-letter filter:
    /// itself, or anyone (`None`) for an admin.
    pub fn owner_filter(&self) -> Option<String> {
        (!self.admin).then(|| self.name.clone())
    }

    /// Whether its `callback_url`s may name `host` (lowercase).
    pub fn allows_callback_host(&self, host: &str) -> bool {
        gateway_config::callback_host_allowed(&self.callback_hosts, host)
    }
}

impl ClientKeys {
    pub fn new(clients: &[ClientSettings]) -> Self {
        Self {
            clients: clients
                .iter()
                .filter_map(|c| {
                    let key = c.key.as_ref()?.expose_secret().as_bytes().to_vec();
                    let info = ClientInfo {
                        name: c.name.clone(),
                        senders: c.senders.clone(),
                        admin: c.admin,
                        rate_per_second: c.rate_per_second,
                        per_day: c.per_day,
                        sender_quotas: c.sender_quotas.clone(),
                        callback_hosts: c.callback_hosts.clone(),
                    };
                    Some((key, Client(Arc::new(info))))
                })
                .collect(),
        }
    }

    fn find(&self, presented: &[u8]) -> Option<Client> {
        // Every key is compared, so the time taken does not say which matched.
        let mut found = None;
        for (key, client) in &self.clients {
            if bool::from(key.as_slice().ct_eq(presented)) {
                found = Some(client.clone());
            }
        }
        found
    }
}

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing Authorization: Bearer <client key>",
            ))?;
        let key = header
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .ok_or(ApiError::Unauthorized(
                "Authorization must be Bearer <client key>",
            ))?;
        state
            .clients
            .find(key)
            .ok_or(ApiError::Unauthorized("unknown client key"))
    }
}
