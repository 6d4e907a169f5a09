//! Why a Graph API call did not succeed: Meta's own error object (classified
//! elsewhere on its `code`, never on the HTTP status), or a failure before
//! Meta answered.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// Meta answered with its error shape.
    #[error("Meta error {code} (HTTP {http_status}): {message}")]
    Meta {
        http_status: u16,
        code: i64,
        /// Meta's `error.message`, e.g. "(#130429) Rate limit hit".
        message: String,
        details: Option<String>,
        fbtrace_id: Option<String>,
    },
    /// An HTTP error without Meta's shape (a proxy, a load balancer).
    #[error("HTTP {http_status} without a Graph API error body")]
    Http { http_status: u16 },
    #[error("the Graph API did not answer in time")]
    Timeout,
    #[error("connection to the Graph API failed: {0}")]
    Connection(String),
    #[error("the Graph API answered something unexpected: {0}")]
    InvalidResponse(String),
    #[error("client configuration: {0}")]
    Config(String),
}

#[derive(Deserialize)]
struct Envelope {
    error: MetaError,
}

#[derive(Deserialize)]
struct MetaError {
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_data: Option<ErrorData>,
    #[serde(default)]
    fbtrace_id: Option<String>,
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    details: Option<String>,
}

impl GraphError {
    pub(crate) fn from_error_body(http_status: u16, bytes: &[u8]) -> Self {
        match serde_json::from_slice::<Envelope>(bytes) {
            Ok(Envelope { error }) => Self::Meta {
                http_status,
                code: error.code,
                message: error.message,
                details: error.error_data.and_then(|d| d.details),
                fbtrace_id: error.fbtrace_id,
            },
            Err(_) => Self::Http { http_status },
        }
    }

    pub(crate) fn from_transport(error: reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else {
            // reqwest's message names the URL, which holds no secret (the
            // token travels in a header); the chain says what broke.
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            Self::Connection(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_metas_error_shape() {
        let body = br#"{"error":{"message":"(#130429) Rate limit hit","type":"OAuthException","code":130429,"error_data":{"messaging_product":"whatsapp","details":"Cloud API message throughput has been reached."},"fbtrace_id":"Az8or2yhqkZfEZ-_4Qn_Bam"}}"#;
        let error = GraphError::from_error_body(400, body);
        match error {
            GraphError::Meta {
                http_status,
                code,
                details,
                fbtrace_id,
                ..
            } => {
                assert_eq!(code, 130429);
                assert_eq!(http_status, 400);
                assert_eq!(
                    details.as_deref(),
                    Some("Cloud API message throughput has been reached.")
                );
                assert_eq!(fbtrace_id.as_deref(), Some("Az8or2yhqkZfEZ-_4Qn_Bam"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_error_bodies_keep_the_http_status() {
        let error = GraphError::from_error_body(502, b"<html>Bad Gateway</html>");
        assert_eq!(error, GraphError::Http { http_status: 502 });
    }
}
