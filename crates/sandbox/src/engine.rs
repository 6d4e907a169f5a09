//! The simulated Cloud API without HTTP: the numbers, the template registry
//! and the user directory, the switchable rules and faults, and the two
//! things that happen to them: a business sends a message (`send`), a user
//! writes (`receive`, now or at a past time). For tests, a user's window can
//! also be closed early (`close_window`), as it is when the business's idea
//! of it is stale.
//!
//! A send is decided in this order, and a refused send uses no quota: token (190) → number (100) → request validation
//! (100, 131008, 131009) → template registry (132xxx) → a failing recipient
//! (1, 2), forced maintenance (131057) and throttling (130429) → window when
//! synchronous (131047) → throughput (130429) → pair limit, or a
//! pair-limited recipient (131056). An accepted send is recorded,
//! answered with a wamid, and followed by status webhooks, or by a `failed`
//! status when the user directory or an asynchronous window says so; with
//! `StatusConfig::answer_after_status_ms` its answer comes with a `Hold`
//! that the send route awaits, so the first status webhook goes first.
//!
//! The user directory can be replaced at run time (`set_users`); it is read
//! only when the users rule is on.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::account::Account;
use crate::config::{FailureMode, NumberConfig, Rules, SandboxConfig, TemplateConfig, UserConfig};
use crate::errors::{MetaError, SandboxError};
use crate::faults::{self, ActiveFaults, Faults};
use crate::ids::{Direction, Ids};
use crate::locks::{lock, read, write};
use crate::media::{self, MediaStore, StoredMedia};
use crate::number::NumberState;
use crate::random::Random;
use crate::read_receipts::{self, ReadReceipt, ReadReceipts};
use crate::records::{AcceptedMessage, Record, Records};
use crate::rules::conversation::Conversations;
use crate::stats::{Counters, Event, SandboxStats};
use crate::templates::TemplateRegistry;
use crate::user_id::UserId;
use crate::validation::{self, Outbound};
use crate::webhooks::payload::{InboundMedia, InboundMessage, Pricing, SentMessage};
use crate::webhooks::{Hold, Webhooks};

/// Longest simulated user message, as for text sends.
const INBOUND_TEXT_MAX: usize = 4096;

#[derive(Debug)]
pub(crate) struct Engine {
    numbers: HashMap<String, NumberState>,
    /// Every configured token, to tell an unknown token (190) from a known
    /// token used on an unknown number (100).
    tokens: HashSet<String>,
    pub(crate) templates: TemplateRegistry,
    /// Tokens, number health and subscriptions, for the management reads.
    pub(crate) account: Account,
    users: RwLock<Users>,
    rules: RwLock<Rules>,
    /// Shared rather than copied: each send reads it, and the recipient
    /// sets would otherwise be cloned on every request.
    faults: RwLock<Arc<ActiveFaults>>,
    records: Records,
    counters: Arc<Counters>,
    pub(crate) webhooks: Arc<Webhooks>,
    /// Open conversations, for statuses under conversation-based pricing.
    conversations: Mutex<Conversations>,
    /// Inbound messages delivered, and the read receipts for them.
    pub(crate) receipts: ReadReceipts,
    /// Uploaded files and those users sent.
    pub(crate) media: MediaStore,
    ids: Ids,
    pub(crate) random: Random,
}

impl Engine {
    pub(crate) fn new(config: SandboxConfig) -> Self {
        let now = Instant::now();
        let random = Random::from_entropy();
        let counters = Arc::new(Counters::default());
        let users = Users::new(config.users);
        let account = Account::new(&config.numbers);
        Self {
            account,
            tokens: config
                .numbers
                .iter()
                .map(|n| n.access_token.clone())
                .collect(),
            numbers: config
                .numbers
                .into_iter()
                .map(|n| (n.phone_number_id.clone(), NumberState::new(n, now)))
                .collect(),
            templates: TemplateRegistry::new(&config.templates),
            users: RwLock::new(users),
            rules: RwLock::new(config.rules),
            faults: RwLock::new(Arc::new(ActiveFaults::new(config.faults, now))),
            records: Records::new(config.record_limit),
            webhooks: Arc::new(Webhooks::new(
                config.webhook,
                config.statuses,
                Arc::clone(&counters),
            )),
            counters,
            conversations: Mutex::new(Conversations::default()),
            receipts: ReadReceipts::default(),
            media: MediaStore::new(config.media),
            ids: Ids::new(&random),
            random,
        }
    }

    pub(crate) fn rules(&self) -> Rules {
        *read(&self.rules)
    }

    pub(crate) fn set_rules(&self, rules: Rules) {
        *write(&self.rules) = rules;
    }

    /// The user directory, as it was set (ordered by id).
    pub(crate) fn users(&self) -> Vec<UserConfig> {
        read(&self.users).list()
    }

    /// Replaces the user directory; sends accepted from now on follow it.
    pub(crate) fn set_users(&self, users: Vec<UserConfig>) {
        *write(&self.users) = Users::new(users);
    }

    pub(crate) fn active_faults(&self) -> Arc<ActiveFaults> {
        Arc::clone(&read(&self.faults))
    }

    pub(crate) fn faults(&self) -> Faults {
        self.active_faults().remaining(Instant::now())
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        *write(&self.faults) = Arc::new(ActiveFaults::new(faults, Instant::now()));
    }

    pub(crate) fn count(&self, event: Event) {
        self.counters.count(event);
    }

    pub(crate) fn stats(&self) -> SandboxStats {
        self.counters.snapshot()
    }

    pub(crate) fn accepted(&self, phone_number_id: Option<&str>) -> Vec<AcceptedMessage> {
        self.records.list(phone_number_id, &self.ids)
    }

    pub(crate) fn reset(&self) {
        let now = Instant::now();
        self.records.clear();
        self.counters.reset();
        self.webhooks.clear();
        lock(&self.conversations).clear();
        self.receipts.clear();
        self.media.reset();
        for number in self.numbers.values() {
            number.reset(now);
        }
    }

    /// Handles `POST /{version}/{phone_number_id}/messages`: the success
    /// body (with the hold its answer must wait for, if any), or the error
    /// Meta would answer with (counted as a rejection).
    pub(crate) fn send(
        &self,
        phone_number_id: &str,
        authorization: Option<&str>,
        body: Bytes,
    ) -> Result<Accepted, MetaError> {
        let result = self.try_send(phone_number_id, authorization, body);
        if let Err(error) = &result {
            self.counters.count(Event::Rejected(error.code));
        }
        result
    }

    fn try_send(
        &self,
        phone_number_id: &str,
        authorization: Option<&str>,
        body: Bytes,
    ) -> Result<Accepted, MetaError> {
        let now = Instant::now();
        let rules = self.rules();
        let number = self.authorize(phone_number_id, authorization, rules.tokens)?;
        let request: Value = serde_json::from_slice(&body)
            .map_err(|_| MetaError::invalid_parameter("The request body is not valid JSON"))?;
        if read_receipts::is_receipt(&request) {
            return self.mark_read(number, &request, &rules, now);
        }
        let outbound = validation::parse(&request, rules.validation)?;
        let template = self.template(&outbound, rules.templates)?;

        let user = outbound.user.key();
        let faults = self.active_faults();
        if faults.failing(user) {
            return Err(faults::server_error(&self.random));
        }
        if faults.in_maintenance(now) {
            return Err(MetaError::maintenance());
        }
        if faults.throttled(now) {
            return Err(MetaError::throttled(rules.throughput_http_429));
        }
        let admitted = number.admit(
            user,
            outbound.is_template(),
            faults.pair_limited(user),
            &rules,
            now,
        )?;

        let failure = self.failure(&outbound, template, admitted.window_open, &rules);
        let sequence = self.ids.next_sequence();
        let wamid = self.ids.wamid(user, sequence, Direction::Outbound);
        let wall = SystemTime::now();
        self.records.push(Record {
            at: wall,
            phone_number_id: Arc::clone(&number.id),
            recipient: user.into(),
            sequence,
            // A copy: the request's bytes share the connection's read buffer,
            // which a kept slice would pin whole (kilobytes per record).
            body: Bytes::copy_from_slice(&body),
        });
        self.counters.count(Event::Accepted);
        if let Some(failure) = &failure {
            self.counters.count(Event::FailedStatus(failure.code));
        }
        let mut hold = None;
        if self.webhooks.is_enabled() {
            // A template missing from the registry (rule off) bills as utility.
            let mut pricing = Pricing::for_message(
                outbound
                    .is_template()
                    .then(|| {
                        template.map_or_else(|| "UTILITY".into(), |t| self.templates.category(t))
                    })
                    .as_deref(),
                admitted.in_window,
            );
            if failure.is_none() && self.webhooks.statuses().conversations {
                let random = &self.random;
                pricing.conversation = Some(lock(&self.conversations).join(
                    phone_number_id,
                    user,
                    &pricing.category,
                    now,
                    wall,
                    || format!("{:016x}{:016x}", random.next_u64(), random.next_u64()),
                ));
            }
            let message = SentMessage {
                number: Arc::clone(&number.config),
                wamid: wamid.clone(),
                user: outbound.user.clone(),
                biz_opaque_callback_data: request
                    .get("biz_opaque_callback_data")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                pricing,
                failure,
            };
            hold = self.webhooks.report(message, now, wall, &self.random);
        }
        Ok(Accepted {
            answer: success(&outbound, wamid),
            hold,
        })
    }

    /// A read receipt (see `read_receipts`): for an inbound message this
    /// number received, within the number's throughput.
    fn mark_read(
        &self,
        number: &NumberState,
        request: &Value,
        rules: &Rules,
        now: Instant,
    ) -> Result<Accepted, MetaError> {
        let (message_id, typing) = read_receipts::parse(request)?;
        if !self.receipts.received(&number.id, message_id) {
            return Err(MetaError::invalid_parameter(
                "message_id is not a message this number received",
            ));
        }
        number.admit_call(rules, now)?;
        self.receipts.accept(ReadReceipt {
            at: SystemTime::now(),
            phone_number_id: number.id.to_string(),
            message_id: message_id.to_owned(),
            typing,
        });
        self.counters.count(Event::ReadReceipt);
        Ok(Accepted {
            answer: read_receipts::success(),
            hold: None,
        })
    }

    fn authorize(
        &self,
        phone_number_id: &str,
        authorization: Option<&str>,
        check_token: bool,
    ) -> Result<&NumberState, MetaError> {
        let token = authorization.and_then(bearer);
        if check_token && !token.is_some_and(|token| self.tokens.contains(token)) {
            return Err(MetaError::invalid_token());
        }
        let number = self
            .numbers
            .get(phone_number_id)
            .ok_or_else(|| MetaError::unknown_object(phone_number_id))?;
        if check_token && token != Some(number.config.access_token.as_str()) {
            return Err(MetaError::invalid_token());
        }
        if check_token && let Some(refusal) = token.and_then(|t| self.account.send_refusal(t)) {
            return Err(refusal);
        }
        Ok(number)
    }

    /// The registered template a send uses: checked when the rule is on,
    /// looked up only (for its category) when it is off.
    fn template(
        &self,
        outbound: &Outbound<'_>,
        check: bool,
    ) -> Result<Option<&TemplateConfig>, MetaError> {
        let Some(used) = &outbound.template else {
            return Ok(None);
        };
        if check {
            self.templates.check(used).map(Some)
        } else {
            Ok(self.templates.find(used.name, used.language))
        }
    }

    /// Why an accepted send will end in a `failed` status, if it will.
    fn failure(
        &self,
        outbound: &Outbound<'_>,
        template: Option<&TemplateConfig>,
        window_open: bool,
        rules: &Rules,
    ) -> Option<MetaError> {
        let users = rules.users.then(|| read(&self.users));
        let user = users.as_ref().and_then(|u| u.get(outbound.user.key()));
        if user.is_some_and(|u| u.not_on_whatsapp) {
            return Some(MetaError::undeliverable());
        }
        if rules.window
            && rules.window_failure == FailureMode::Async
            && !outbound.is_template()
            && !window_open
        {
            return Some(MetaError::window_closed());
        }
        let user = user.filter(|_| template.is_some_and(|t| self.templates.is_marketing(t)))?;
        if user.marketing_opt_out {
            Some(MetaError::marketing_opt_out())
        } else if user.marketing_capped {
            Some(MetaError::marketing_capped())
        } else {
            None
        }
    }

    /// A simulated user message sent at `at`: opens the window for what is
    /// left of its 24 hours, uses throughput quota if it is recent, and sends
    /// a `messages` webhook whose `timestamp` is `at`. A time in the future
    /// is taken as now. Returns the message's wamid.
    pub(crate) fn receive(
        &self,
        phone_number_id: &str,
        from: &str,
        text: &str,
        at: SystemTime,
    ) -> Result<String, SandboxError> {
        if !(1..=INBOUND_TEXT_MAX).contains(&text.chars().count()) {
            return Err(SandboxError::InvalidText);
        }
        self.deliver(phone_number_id, from, text, None, at)
    }

    /// A simulated user message carrying a file (`image` for jpeg or png,
    /// `sticker` for webp, `audio`, `video` or `document` by its type),
    /// with an optional caption: the file is stored as media the number
    /// may download, and the webhook carries its `id`, `mime_type` and
    /// `sha256`. Returns the wamid and the media id.
    pub(crate) fn receive_media(
        &self,
        phone_number_id: &str,
        from: &str,
        mime_type: &str,
        content: Bytes,
        caption: &str,
    ) -> Result<(String, String), SandboxError> {
        let (kind, max) = media::limit(mime_type).ok_or_else(|| {
            SandboxError::InvalidMedia(format!("{mime_type} is not a WhatsApp media type"))
        })?;
        if content.is_empty() || content.len() as u64 > max {
            return Err(SandboxError::InvalidMedia(format!(
                "a {mime_type} file must be 1 to {max} bytes"
            )));
        }
        if caption.chars().count() > INBOUND_TEXT_MAX {
            return Err(SandboxError::InvalidText);
        }
        self.number(phone_number_id)?;
        parse_user(from)?;
        let stored = self
            .media
            .store(phone_number_id, mime_type, content, &self.random);
        let media = InboundMedia {
            kind,
            id: stored.id.clone(),
            mime_type: stored.mime_type,
            sha256: stored.sha256,
        };
        let wamid = self.deliver(
            phone_number_id,
            from,
            caption,
            Some(media),
            SystemTime::now(),
        )?;
        Ok((wamid, stored.id))
    }

    fn deliver(
        &self,
        phone_number_id: &str,
        from: &str,
        text: &str,
        media: Option<InboundMedia>,
        at: SystemTime,
    ) -> Result<String, SandboxError> {
        let number = self.number(phone_number_id)?;
        let user = parse_user(from)?;
        let now = Instant::now();
        let wall = SystemTime::now();
        let age = wall.duration_since(at).unwrap_or(Duration::ZERO);
        number.receive(user.key(), self.rules().throughput, now, age);
        let wamid = self
            .ids
            .wamid(user.key(), self.ids.next_sequence(), Direction::Inbound);
        self.counters.count(Event::Inbound);
        self.receipts.delivered(phone_number_id, &wamid);
        let message = InboundMessage {
            number: Arc::clone(&number.config),
            wamid: wamid.clone(),
            user,
            text: text.to_owned(),
            media,
            at: at.min(wall),
        };
        self.webhooks.inbound(message, now);
        Ok(wamid)
    }

    /// The number a media upload is for, after its token: 190 for a token
    /// nobody has (or one that no longer works), 100 for an unknown number
    /// or one the token is not for.
    pub(crate) fn authorize_media_upload(
        &self,
        phone_number_id: &str,
        authorization: Option<&str>,
    ) -> Result<&NumberState, MetaError> {
        self.authorize(phone_number_id, authorization, self.rules().tokens)
    }

    /// A stored file the caller may read or delete: with the token of the
    /// number that owns it, and that number if `phone_number_id` names
    /// one. Anything else is Meta's "does not exist" (100), as Meta does
    /// not tell missing objects from hidden ones.
    pub(crate) fn owned_media(
        &self,
        media_id: &str,
        phone_number_id: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<StoredMedia, MetaError> {
        let check = self.rules().tokens;
        let token = authorization.and_then(bearer);
        if check && !token.is_some_and(|token| self.tokens.contains(token)) {
            return Err(MetaError::invalid_token());
        }
        let media = self
            .media
            .get(media_id)
            .ok_or_else(|| MetaError::unknown_read(media_id))?;
        if phone_number_id.is_some_and(|id| id != media.phone_number_id) {
            return Err(MetaError::unknown_read(media_id));
        }
        let owner = self.numbers.get(&media.phone_number_id);
        if check && owner.map(|n| n.config.access_token.as_str()) != token {
            return Err(MetaError::unknown_read(media_id));
        }
        Ok(media)
    }

    /// Closes a user's window behind the business's back, until the user
    /// writes again. Nothing is reported: Meta sends no webhook for it.
    pub(crate) fn close_window(
        &self,
        phone_number_id: &str,
        user: &str,
    ) -> Result<(), SandboxError> {
        let number = self.number(phone_number_id)?;
        let user = parse_user(user)?;
        number.close_window(user.key());
        Ok(())
    }

    /// The configuration of a number, for the management reads.
    pub(crate) fn number_config(&self, phone_number_id: &str) -> Option<Arc<NumberConfig>> {
        self.numbers
            .get(phone_number_id)
            .map(|n| Arc::clone(&n.config))
    }

    /// Every configured number, sorted by id.
    pub(crate) fn number_configs(&self) -> Vec<Arc<NumberConfig>> {
        let mut all: Vec<_> = self
            .numbers
            .values()
            .map(|n| Arc::clone(&n.config))
            .collect();
        all.sort_by(|a, b| a.phone_number_id.cmp(&b.phone_number_id));
        all
    }

    fn number(&self, phone_number_id: &str) -> Result<&NumberState, SandboxError> {
        self.numbers
            .get(phone_number_id)
            .ok_or_else(|| SandboxError::UnknownNumber(phone_number_id.to_owned()))
    }
}

/// An accepted send: Meta's answer, and what it must wait for first.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) answer: Value,
    /// Set when the answer follows the first status webhook
    /// (`StatusConfig::answer_after_status_ms`).
    pub(crate) hold: Option<Hold>,
}

/// The user directory, keyed as sends are keyed.
#[derive(Debug, Default)]
struct Users {
    by_key: HashMap<String, UserConfig>,
}

impl Users {
    fn new(users: Vec<UserConfig>) -> Self {
        let by_key = users
            .into_iter()
            .map(|user| {
                // An id that is neither form is kept as written and simply
                // never matches.
                let key = UserId::parse(&user.id)
                    .map_or_else(|| user.id.clone(), |id| id.key().to_owned());
                (key, user)
            })
            .collect();
        Self { by_key }
    }

    fn get(&self, key: &str) -> Option<&UserConfig> {
        self.by_key.get(key)
    }

    fn list(&self) -> Vec<UserConfig> {
        let mut all: Vec<UserConfig> = self.by_key.values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

/// A user of the sandbox's own API: a phone number in any form `to`
/// accepts, or a BSUID.
fn parse_user(input: &str) -> Result<UserId, SandboxError> {
    UserId::parse(input).ok_or_else(|| SandboxError::InvalidUser(input.to_owned()))
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Meta's answer to an accepted send.
fn success(outbound: &Outbound<'_>, wamid: String) -> Value {
    let contact = match &outbound.user {
        UserId::Phone(digits) => json!({"input": outbound.input, "wa_id": digits}),
        UserId::Scoped(id) => json!({"input": outbound.input, "user_id": id}),
    };
    let message = if outbound.is_template() {
        json!({"id": wamid, "message_status": "accepted"})
    } else {
        json!({"id": wamid})
    };
    json!({"messaging_product": "whatsapp", "contacts": [contact], "messages": [message]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NumberConfig, TemplateStatus};

    const NUMBER: &str = "106540352242922";
    const TOKEN: &str = "token-a";

    fn engine(configure: impl FnOnce(&mut SandboxConfig)) -> Engine {
        let mut config = SandboxConfig {
            numbers: vec![
                NumberConfig::new(NUMBER, "waba", TOKEN),
                NumberConfig::new("2", "waba", "token-b"),
            ],
            ..SandboxConfig::default()
        };
        configure(&mut config);
        Engine::new(config)
    }

    fn send(engine: &Engine, body: Value) -> Result<Value, i64> {
        engine
            .send(
                NUMBER,
                Some(&format!("Bearer {TOKEN}")),
                Bytes::from(body.to_string()),
            )
            .map(|accepted| accepted.answer)
            .map_err(|e| e.code)
    }

    fn text(to: &str) -> Value {
        json!({"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": "hi"}})
    }

    fn template(name: &str, to: &str) -> Value {
        json!({"messaging_product": "whatsapp", "to": to, "type": "template",
               "template": {"name": name, "language": {"code": "en_US"}}})
    }

    #[test]
    fn tokens_and_numbers_are_checked_first() {
        let engine = engine(|_| {});
        let body = || Bytes::from(text("+16505551234").to_string());
        let code = |number: &str, auth: Option<&str>| {
            engine.send(number, auth, body()).err().map(|e| e.code)
        };
        assert_eq!(code(NUMBER, None), Some(190));
        assert_eq!(code(NUMBER, Some("Bearer nope")), Some(190));
        assert_eq!(
            code(NUMBER, Some("Bearer token-b")),
            Some(190),
            "another number's token"
        );
        assert_eq!(code("999", Some("Bearer token-a")), Some(100));
        assert_eq!(
            code(NUMBER, Some("bearer  token-a ")),
            Some(131_047),
            "authorized; the window is closed"
        );
        engine.set_rules(Rules {
            tokens: false,
            ..Rules::default()
        });
        assert_eq!(code(NUMBER, None), Some(131_047));
        assert_eq!(engine.stats().rejections.get(&190), Some(&3));
    }

    #[test]
    fn an_accepted_send_is_answered_recorded_and_counted() {
        let engine = engine(|_| {});
        engine
            .receive(NUMBER, "16505551234", "hello", SystemTime::now())
            .expect("inbound");
        let answer = send(&engine, text("+1 650-555-1234")).expect("accepted");
        assert_eq!(answer["messaging_product"], "whatsapp");
        assert_eq!(
            answer["contacts"],
            json!([{"input": "+1 650-555-1234", "wa_id": "16505551234"}])
        );
        let wamid = answer["messages"][0]["id"].as_str().expect("wamid");
        let records = engine.accepted(None);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].wamid, wamid);
        assert_eq!(records[0].recipient, "16505551234");
        assert_eq!(engine.stats().accepted, 1);
        assert_eq!(engine.stats().inbound, 1);

        let bsuid = json!({"messaging_product": "whatsapp", "recipient": "US.1349120865530274", "type": "template",
                           "template": {"name": "hello_world", "language": {"code": "en_US"}}});
        let answer = send(&engine, bsuid).expect("accepted");
        assert_eq!(answer["contacts"][0]["user_id"], "US.1349120865530274");
        assert_eq!(answer["messages"][0]["message_status"], "accepted");
    }

    #[test]
    fn the_registry_and_forced_faults_refuse_before_any_quota_is_used() {
        let engine = engine(|config| {
            let mut paused = TemplateConfig::new("paused", "en_US", 0);
            paused.status = TemplateStatus::Paused;
            config.templates.push(paused);
            config.numbers[0].rate_per_second = 1;
        });
        assert_eq!(
            send(&engine, template("nope", "16505551234")).err(),
            Some(132_001)
        );
        assert_eq!(
            send(&engine, template("order_update", "16505551234")).err(),
            Some(132_000)
        );
        assert_eq!(
            send(&engine, template("paused", "16505551234")).err(),
            Some(132_015)
        );
        engine.set_faults(Faults {
            maintenance_for_ms: 60_000,
            ..Faults::default()
        });
        assert_eq!(
            send(&engine, template("hello_world", "16505551234")).err(),
            Some(131_057)
        );
        engine.set_faults(Faults {
            throttle_for_ms: 60_000,
            ..Faults::default()
        });
        assert_eq!(
            send(&engine, template("hello_world", "16505551234")).err(),
            Some(130_429)
        );
        engine.set_faults(Faults::default());
        assert!(
            send(&engine, template("hello_world", "16505551234")).is_ok(),
            "the one token is still there"
        );
        assert_eq!(
            send(&engine, template("hello_world", "16505551235")).err(),
            Some(130_429)
        );
    }

    #[test]
    fn faulted_recipients_are_refused_and_counted_without_using_quota() {
        let engine = engine(|config| config.numbers[0].rate_per_second = 1);
        engine.set_faults(Faults {
            pair_limited_recipients: vec!["+1 650 555 0001".into()],
            failing_recipients: vec!["US.1349".into()],
            ..Faults::default()
        });
        let to_bsuid = json!({"messaging_product": "whatsapp", "recipient": "US.1349", "type": "template",
                              "template": {"name": "hello_world", "language": {"code": "en_US"}}});
        for _ in 0..3 {
            assert_eq!(
                send(&engine, template("hello_world", "16505550001")).err(),
                Some(131_056)
            );
            assert!(matches!(send(&engine, to_bsuid.clone()).err(), Some(1 | 2)));
        }
        assert!(
            send(&engine, template("hello_world", "16505550002")).is_ok(),
            "the one token is still there"
        );
        let stats = engine.stats();
        assert_eq!(stats.rejections.get(&131_056), Some(&3));
        let server_errors: u64 = [1, 2].iter().filter_map(|c| stats.rejections.get(c)).sum();
        assert_eq!(server_errors, 3);
        assert_eq!(stats.accepted, 1);
    }

    #[test]
    fn user_flags_and_async_windows_end_in_failed_statuses() {
        let engine = engine(|config| {
            let mut promo = TemplateConfig::new("promo", "en_US", 0);
            promo.category = "MARKETING".into();
            config.templates.push(promo);
            config.users = vec![
                UserConfig {
                    id: "+1 650 555 0001".into(),
                    not_on_whatsapp: true,
                    ..UserConfig::default()
                },
                UserConfig {
                    id: "16505550002".into(),
                    marketing_opt_out: true,
                    ..UserConfig::default()
                },
                UserConfig {
                    id: "16505550003".into(),
                    marketing_capped: true,
                    ..UserConfig::default()
                },
            ];
            config.rules.window_failure = FailureMode::Async;
        });
        let failure = |body: Value| {
            let outbound = validation::parse(&body, true).expect("valid");
            let template = engine.template(&outbound, true).expect("registered");
            engine
                .failure(&outbound, template, false, &engine.rules())
                .map(|e| e.code)
        };
        assert_eq!(
            failure(template("hello_world", "16505550001")),
            Some(131_026)
        );
        assert_eq!(failure(template("promo", "16505550002")), Some(131_050));
        assert_eq!(failure(template("promo", "16505550003")), Some(131_049));
        assert_eq!(
            failure(template("hello_world", "16505550002")),
            None,
            "not a marketing template"
        );
        assert_eq!(failure(text("16505550009")), Some(131_047));
        assert_eq!(failure(template("promo", "16505550009")), None);

        assert!(
            send(&engine, text("16505550009")).is_ok(),
            "async: answered 200"
        );
        assert_eq!(engine.stats().failed_statuses.get(&131_047), Some(&1));
    }

    #[test]
    fn inbound_checks_its_inputs() {
        let engine = engine(|_| {});
        assert_eq!(
            engine.receive("999", "16505551234", "x", SystemTime::now()),
            Err(SandboxError::UnknownNumber("999".into()))
        );
        assert!(matches!(
            engine.receive(NUMBER, "nobody", "x", SystemTime::now()),
            Err(SandboxError::InvalidUser(_))
        ));
        assert_eq!(
            engine.receive(NUMBER, "16505551234", "", SystemTime::now()),
            Err(SandboxError::InvalidText)
        );
        let wamid = engine
            .receive(NUMBER, "US.77", "hi", SystemTime::now())
            .expect("a BSUID may write");
        assert!(wamid.starts_with("wamid."));
    }

    #[test]
    fn reset_clears_records_counters_and_state() {
        let engine = engine(|_| {});
        engine
            .receive(NUMBER, "16505551234", "hello", SystemTime::now())
            .expect("inbound");
        assert!(send(&engine, text("16505551234")).is_ok());
        engine.reset();
        assert!(engine.accepted(None).is_empty());
        assert_eq!(engine.stats(), SandboxStats::default());
        assert_eq!(
            send(&engine, text("16505551234")).err(),
            Some(131_047),
            "the window is closed again"
        );
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer   abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn ago(age: Duration) -> SystemTime {
        SystemTime::now() - age
    }

    #[test]
    fn a_closed_window_refuses_free_form_until_the_user_writes_again() {
        let engine = engine(|_| {});
        assert_eq!(
            engine.close_window("999", "16505551234"),
            Err(SandboxError::UnknownNumber("999".into()))
        );
        assert!(matches!(
            engine.close_window(NUMBER, "nobody"),
            Err(SandboxError::InvalidUser(_))
        ));
        assert_eq!(
            engine.close_window(NUMBER, "16505559999"),
            Ok(()),
            "closing a window that was never open is fine"
        );

        engine
            .receive(NUMBER, "16505551234", "hello", SystemTime::now())
            .expect("inbound");
        assert!(send(&engine, text("16505551234")).is_ok());
        engine
            .close_window(NUMBER, "+1 (650) 555-1234")
            .expect("any phone form names the user");
        assert_eq!(send(&engine, text("16505551234")).err(), Some(131_047));
        assert!(
            send(&engine, template("hello_world", "16505551234")).is_ok(),
            "templates still pass"
        );

        engine.set_rules(Rules {
            window_failure: FailureMode::Async,
            ..Rules::default()
        });
        assert!(send(&engine, text("16505551234")).is_ok(), "answered 200");
        assert_eq!(engine.stats().failed_statuses.get(&131_047), Some(&1));

        engine
            .receive(NUMBER, "16505551234", "back", SystemTime::now())
            .expect("inbound");
        assert!(send(&engine, text("16505551234")).is_ok());
        assert_eq!(engine.stats().failed_statuses.get(&131_047), Some(&1));
    }

    #[test]
    fn closing_a_window_sends_no_webhook() {
        let engine = with_webhook();
        engine
            .receive(NUMBER, "16505551234", "hello", SystemTime::now())
            .expect("inbound");
        let _ = engine.webhooks.take_due(Instant::now());
        engine.close_window(NUMBER, "16505551234").expect("closed");
        assert!(engine.webhooks.take_due(Instant::now()).is_empty());
    }

    #[test]
    fn an_inbound_aged_25_hours_leaves_the_window_closed() {
        let engine = engine(|_| {});
        engine
            .receive(NUMBER, "16505551234", "old", ago(25 * HOUR))
            .expect("inbound");
        assert_eq!(send(&engine, text("16505551234")).err(), Some(131_047));
        assert_eq!(engine.stats().inbound, 1, "still counted as received");
    }

    #[test]
    fn an_inbound_aged_23_hours_opens_the_window() {
        let engine = engine(|_| {});
        engine
            .receive(NUMBER, "16505551234", "recent", ago(23 * HOUR))
            .expect("inbound");
        assert!(send(&engine, text("16505551234")).is_ok());
    }

    #[test]
    fn absurd_inbound_times_saturate() {
        let engine = engine(|_| {});
        engine
            .receive(NUMBER, "16505550001", "ancient", SystemTime::UNIX_EPOCH)
            .expect("an age beyond the uptime");
        assert_eq!(send(&engine, text("16505550001")).err(), Some(131_047));
        engine
            .receive(
                NUMBER,
                "16505550002",
                "future",
                SystemTime::now() + 48 * HOUR,
            )
            .expect("a time in the future");
        assert!(
            send(&engine, text("16505550002")).is_ok(),
            "taken as now: open"
        );
    }

    fn inbound_webhooks(engine: &Engine) -> Vec<Value> {
        engine
            .webhooks
            .take_due(Instant::now())
            .into_iter()
            .filter_map(|work| match work {
                crate::webhooks::Work::Inbound(message) => {
                    Some(crate::webhooks::payload::inbound(&message))
                }
                _ => None,
            })
            .map(|body| body["entry"][0]["changes"][0]["value"].clone())
            .collect()
    }

    fn with_webhook() -> Engine {
        engine(|config| {
            config.webhook = Some(crate::config::WebhookTarget::new(
                "http://127.0.0.1:9/webhook",
                "secret",
            ));
        })
    }

    #[test]
    fn the_inbound_webhook_is_dated_when_the_message_was_sent() {
        let engine = with_webhook();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_749_416_383);
        engine
            .receive(NUMBER, "16505551234", "long ago", at)
            .expect("inbound");
        let recent = ago(23 * HOUR);
        engine
            .receive(NUMBER, "16505551234", "yesterday", recent)
            .expect("inbound");
        let future = SystemTime::now() + HOUR;
        engine
            .receive(NUMBER, "16505551234", "tomorrow", future)
            .expect("inbound");
        let values = inbound_webhooks(&engine);
        let timestamp = |i: usize| -> u64 {
            values[i]["messages"][0]["timestamp"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .expect("a string of Unix seconds")
        };
        let unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs()
        };
        assert_eq!(values.len(), 3);
        assert_eq!(values[0]["messages"][0]["timestamp"], "1749416383");
        assert_eq!(timestamp(1), unix(recent));
        assert!(timestamp(2) < unix(future), "the future is taken as now");
    }

    #[test]
    fn a_bsuid_user_writes_as_from_user_id_and_owns_its_window() {
        let engine = with_webhook();
        let bsuid = "US.13491208655302741918";
        engine
            .receive(NUMBER, bsuid, "hi", SystemTime::now())
            .expect("inbound");
        let values = inbound_webhooks(&engine);
        let message = &values[0]["messages"][0];
        assert_eq!(message["from_user_id"], bsuid);
        assert!(message.get("from").is_none(), "no phone number to show");
        assert_eq!(values[0]["contacts"][0]["user_id"], bsuid);

        let to_bsuid = json!({"messaging_product": "whatsapp", "recipient": bsuid,
                              "type": "text", "text": {"body": "hi"}});
        assert!(
            send(&engine, to_bsuid.clone()).is_ok(),
            "its window is open"
        );
        assert_eq!(
            send(&engine, text("+1 349 120 8655")).err(),
            Some(131_047),
            "other users' windows stay closed"
        );
        engine.close_window(NUMBER, bsuid).expect("closed");
        assert_eq!(send(&engine, to_bsuid).err(), Some(131_047));
    }
}
