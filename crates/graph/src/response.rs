//! Meta's answer to an accepted send:
//! `{"messaging_product": "whatsapp", "contacts": [{"input", "wa_id"}], "messages": [{"id": "wamid..."}]}`.

use serde::Deserialize;

use crate::GraphError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendAccepted {
    pub wamid: String,
    /// The WhatsApp id Meta resolved the recipient to; may differ from the input.
    pub wa_id: Option<String>,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    contacts: Vec<Contact>,
    #[serde(default)]
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Contact {
    wa_id: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    id: String,
}

impl SendAccepted {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, GraphError> {
        let body: Body = serde_json::from_slice(bytes).map_err(|e| {
            GraphError::InvalidResponse(format!("success body is not as documented: {e}"))
        })?;
        let wamid = body
            .messages
            .into_iter()
            .next()
            .map(|m| m.id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| GraphError::InvalidResponse("success body has no message id".into()))?;
        Ok(Self {
            wamid,
            wa_id: body.contacts.into_iter().next().and_then(|c| c.wa_id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_metas_success_shape() {
        let body = br#"{"messaging_product":"whatsapp","contacts":[{"input":"+16505551234","wa_id":"16505551234"}],"messages":[{"id":"wamid.HBgL"}]}"#;
        let accepted = SendAccepted::parse(body).expect("parses");
        assert_eq!(accepted.wamid, "wamid.HBgL");
        assert_eq!(accepted.wa_id.as_deref(), Some("16505551234"));
    }

    #[test]
    fn a_success_without_a_wamid_is_an_error() {
        for body in [
            &br#"{"messages":[]}"#[..],
            b"not json",
            br#"{"messages":[{"id":""}]}"#,
        ] {
            assert!(matches!(
                SendAccepted::parse(body),
                Err(GraphError::InvalidResponse(_))
            ));
        }
    }
}
