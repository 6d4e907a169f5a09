use super::*;

const MINIMAL: &str = r#"
[[senders]]
name = "support"
phone_number_id = "106540352242922"
waba_id = "102290129340398"
access_token_env = "WA_TOKEN_SUPPORT"
fallback_template = { name = "hello_world", language = { code = "en_US" } }

[[clients]]
name = "billing"
key_env = "GATEWAY_KEY_BILLING"
senders = ["support"]
"#;

fn env() -> Environment {
    Environment::from_pairs([
        ("WA_TOKEN_SUPPORT", "token-1"),
        ("GATEWAY_KEY_BILLING", "key-1"),
    ])
}

fn load(text: &str, env: &Environment, role: Role) -> Result<Settings, ConfigError> {
    Settings::from_toml(text, "test.toml", env, role)
}

fn error_key(result: Result<Settings, ConfigError>) -> String {
    match result {
        Err(ConfigError::Invalid { key, .. }) | Err(ConfigError::MissingSecret { key, .. }) => key,
        other => panic!("expected a keyed error, got {other:?}"),
    }
}

#[test]
fn minimal_file_gets_documented_defaults() {
    let settings = load(MINIMAL, &env(), Role::Dev).expect("valid");
    assert_eq!(settings.api.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(settings.api.max_body_bytes, 262_144);
    assert_eq!(settings.graph.version, "v25.0");
    assert_eq!(settings.senders[0].rate_per_second, 70);
    assert!(settings.senders[0].fallback_template.is_some());
    assert_eq!(
        settings.clients[0].senders,
        vec!["106540352242922".to_owned()]
    );
    assert!(settings.sender("support").is_some());
    assert!(settings.sender("106540352242922").is_some());
}

#[test]
fn environment_overrides_file_keys() {
    let mut env = env();
    env.set("GATEWAY_REDIS__URL", "redis://10.0.0.1:6380");
    env.set("GATEWAY_GRAPH__TIMEOUT_MS", "2500");
    env.set("GATEWAY_SENDERS__0__RATE_PER_SECOND", "20");
    let settings = load(MINIMAL, &env, Role::Dev).expect("valid");
    assert_eq!(settings.redis.url, "redis://10.0.0.1:6380");
    assert_eq!(settings.graph.timeout, Duration::from_millis(2500));
    assert_eq!(settings.senders[0].rate_per_second, 20);
}

#[test]
fn a_cluster_url_lists_its_nodes() {
    let mut env = env();
    env.set(
        "GATEWAY_REDIS__URL",
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7001",
    );
    let settings = load(MINIMAL, &env, Role::Dev).expect("valid");
    assert_eq!(
        settings.redis.url,
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7001"
    );
    env.set("GATEWAY_REDIS__URL", "cluster://10.0.0.1:7000");
    let err = load(MINIMAL, &env, Role::Dev).unwrap_err().to_string();
    assert!(err.contains("redis.url"), "{err}");
}

#[test]
fn unknown_keys_are_named() {
    let text = format!("{MINIMAL}\n[redis]\nurll = \"redis://x\"\n");
    let err = load(&text, &env(), Role::Dev).unwrap_err().to_string();
    assert!(err.contains("urll"), "{err}");

    let mut env = env();
    env.set("GATEWAY_API__LISTN", "1.2.3.4:1");
    let err = load(MINIMAL, &env, Role::Dev).unwrap_err().to_string();
    assert!(err.contains("listn"), "{err}");
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("GATEWAY_API__LISTEN", "not-an-address", "api.listen"),
        (
            "GATEWAY_SENDERS__0__RATE_PER_SECOND",
            "0",
            "senders[0].rate_per_second",
        ),
        (
            "GATEWAY_SENDERS__0__RATE_PER_SECOND",
            "\"fast\"",
            "senders[0].rate_per_second",
        ),
        ("GATEWAY_GRAPH__VERSION", "25", "graph.version"),
        ("GATEWAY_GRAPH__BASE_URL", "ftp://x", "graph.base_url"),
        ("GATEWAY_REDIS__URL", "localhost", "redis.url"),
    ];
    for (variable, value, key) in cases {
        let mut env = env();
        env.set(variable, value);
        assert_eq!(
            error_key(load(MINIMAL, &env, Role::Dev)),
            key,
            "{variable}={value}"
        );
    }
}

#[test]
fn backlog_caps_default_to_a_million_and_refuse_zero() {
    let settings = load(MINIMAL, &env(), Role::Dev).expect("valid");
    assert_eq!(settings.webhook.max_backlog, 1_000_000);
    assert_eq!(settings.notify.max_backlog, 1_000_000);

    let text = format!("{MINIMAL}\n[webhook]\nmax_backlog = 5\n[notify]\nmax_backlog = 7\n");
    let settings = load(&text, &env(), Role::Dev).expect("valid");
    assert_eq!(settings.webhook.max_backlog, 5);
    assert_eq!(settings.notify.max_backlog, 7);

    for (section, key) in [
        ("webhook", "webhook.max_backlog"),
        ("notify", "notify.max_backlog"),
    ] {
        let text = format!("{MINIMAL}\n[{section}]\nmax_backlog = 0\n");
        let err = load(&text, &env(), Role::Dev).unwrap_err();
        assert!(err.to_string().contains(key), "{err}");
        assert_eq!(error_key(Err(err)), key);
        // From the environment too, and not a negative number.
        for value in ["0", "-1"] {
            let mut env = env();
            env.set(
                format!("GATEWAY_{}__MAX_BACKLOG", section.to_ascii_uppercase()),
                value,
            );
            assert_eq!(error_key(load(MINIMAL, &env, Role::Dev)), key, "{value}");
        }
    }
}

#[test]
fn a_bad_fallback_template_is_named() {
    let text = MINIMAL.replace(r#"language = { code = "en_US" }"#, "language = {}");
    assert_eq!(
        error_key(load(&text, &env(), Role::Dev)),
        "senders[0].fallback_template"
    );
}

#[test]
fn clients_may_only_name_configured_senders() {
    let text = MINIMAL.replace(r#"senders = ["support"]"#, r#"senders = ["marketing"]"#);
    assert_eq!(
        error_key(load(&text, &env(), Role::Dev)),
        "clients[0].senders"
    );
}

#[test]
fn duplicate_senders_are_rejected() {
    let second = MINIMAL.split("[[clients]]").next().unwrap_or_default();
    let text = format!("{second}{MINIMAL}");
    assert_eq!(error_key(load(&text, &env(), Role::Dev)), "senders[1].name");
}

#[test]
fn each_role_needs_only_its_secrets() {
    let only_key = Environment::from_pairs([("GATEWAY_KEY_BILLING", "key-1")]);
    // The api moves media with the senders' tokens.
    assert_eq!(
        error_key(load(MINIMAL, &only_key, Role::Api)),
        "senders[0].access_token_env"
    );
    assert!(load(MINIMAL, &env(), Role::Api).is_ok());
    assert_eq!(
        error_key(load(MINIMAL, &only_key, Role::Worker)),
        "senders[0].access_token_env"
    );
    let only_token = Environment::from_pairs([("WA_TOKEN_SUPPORT", "t")]);
    // A worker signs callbacks with the sending client's key.
    assert_eq!(
        error_key(load(MINIMAL, &only_token, Role::Worker)),
        "clients[0].key_env"
    );
    assert!(load(MINIMAL, &env(), Role::Worker).is_ok());
    assert_eq!(
        error_key(load(MINIMAL, &only_token, Role::Api)),
        "clients[0].key_env"
    );
    assert!(load(MINIMAL, &Environment::default(), Role::Ops).is_ok());
}

#[test]
fn secrets_never_show_in_debug_output() {
    let settings = load(MINIMAL, &env(), Role::Dev).expect("valid");
    let printed = format!("{settings:?}");
    assert!(!printed.contains("token-1"));
    assert!(!printed.contains("key-1"));
}

#[test]
fn syntax_errors_name_the_file() {
    let err = load("[api", &env(), Role::Dev).unwrap_err().to_string();
    assert!(err.contains("test.toml"), "{err}");
}

#[test]
fn several_app_secrets_and_subscribers_are_read() {
    let text = format!(
        "{MINIMAL}\n[webhook]\napp_secret_env = [\"APP_A\", \"APP_B\", \"APP_UNSET\"]\n\
         [[subscribers]]\nname = \"crm\"\nurl = \"https://crm.internal/events/\"\n\
         secret_env = \"CRM_SECRET\"\nevents = [\"statuses\"]\n"
    );
    let env = Environment::from_pairs([
        ("WA_TOKEN_SUPPORT", "token-1"),
        ("GATEWAY_KEY_BILLING", "key-1"),
        ("APP_A", "a"),
        ("APP_B", "b"),
        ("CRM_SECRET", "c"),
    ]);
    let settings = load(&text, &env, Role::Worker).expect("valid");
    assert_eq!(settings.webhook.app_secrets.len(), 2);
    assert_eq!(settings.webhook.max_body_bytes, 3 * 1024 * 1024);
    let crm = &settings.subscribers[0];
    assert_eq!(crm.url, "https://crm.internal/events");
    assert!(crm.statuses && !crm.messages);
    assert!(settings.secret_variables().contains(&"CRM_SECRET"));
}

#[test]
fn a_subscriber_needs_its_secret_in_a_worker_and_known_event_kinds() {
    let with = |events: &str| {
        format!(
            "{MINIMAL}\n[[subscribers]]\nname = \"crm\"\nurl = \"https://crm\"\n\
             secret_env = \"CRM_SECRET\"\nevents = {events}\n"
        )
    };
    assert_eq!(
        error_key(load(&with("[\"statuses\"]"), &env(), Role::Worker)),
        "subscribers[0].secret_env"
    );
    assert!(load(&with("[\"statuses\"]"), &env(), Role::Api).is_ok());
    assert_eq!(
        error_key(load(&with("[\"everything\"]"), &env(), Role::Api)),
        "subscribers[0].events"
    );
}

#[test]
fn the_shipped_configuration_files_load() {
    for (name, text) in [
        (
            "gateway.toml",
            include_str!("../../../../config/gateway.toml"),
        ),
        (
            "production.example.toml",
            include_str!("../../../../config/production.example.toml"),
        ),
    ] {
        if let Err(error) = load(text, &Environment::default(), Role::Ops) {
            panic!("{name}: {error}");
        }
    }
}

#[test]
fn the_log_section_has_defaults_and_checked_values() {
    let settings = load(MINIMAL, &env(), Role::Dev).expect("valid");
    assert_eq!(settings.log, LogSettings::default());
    assert_eq!(settings.log.format, LogFormat::Text);
    assert_eq!(settings.log.level, "info");

    let text =
        format!("{MINIMAL}\n[log]\nformat = \"json\"\nlevel = \"info,gateway_worker=debug\"\n");
    let settings = load(&text, &env(), Role::Dev).expect("valid");
    assert_eq!(settings.log.format, LogFormat::Json);
    assert_eq!(settings.log.level, "info,gateway_worker=debug");

    let mut overridden = env();
    overridden.set("GATEWAY_LOG__LEVEL", "WARN");
    let settings = load(MINIMAL, &overridden, Role::Dev).expect("valid");
    assert_eq!(settings.log.level, "warn");

    for (variable, value, key) in [
        ("GATEWAY_LOG__FORMAT", "xml", "log.format"),
        ("GATEWAY_LOG__LEVEL", "loud", "log.level"),
        ("GATEWAY_LOG__LEVEL", "info,=debug", "log.level"),
    ] {
        let mut env = env();
        env.set(variable, value);
        assert_eq!(
            error_key(load(MINIMAL, &env, Role::Dev)),
            key,
            "{variable}={value}"
        );
    }
}

#[test]
fn a_lease_and_a_handover_must_outlast_the_longest_send() {
    let settings = load(MINIMAL, &env(), Role::Dev).expect("the defaults are consistent");
    // 10 s for the Graph API, 5 s for Redis, 0.5 s of margin.
    assert_eq!(settings.worker.longest_send, Duration::from_millis(15_500));
    assert_eq!(settings.worker.longest_call, Duration::from_millis(10_500));
    assert!(settings.worker.lease_ttl >= Duration::from_millis(15_500 + 1_500 + 2_000));
    assert!(settings.worker.shutdown_grace >= settings.worker.longest_send);

    let mut short_lease = env();
    short_lease.set("GATEWAY_WORKER__LEASE_TTL_MS", "10000");
    assert_eq!(
        error_key(load(MINIMAL, &short_lease, Role::Worker)),
        "worker.lease_ttl_ms"
    );
    // A faster Graph API timeout lets a shorter lease do.
    short_lease.set("GATEWAY_GRAPH__TIMEOUT_MS", "3000");
    short_lease.set("GATEWAY_REDIS__RESPONSE_TIMEOUT_MS", "1000");
    short_lease.set("GATEWAY_WORKER__SHUTDOWN_GRACE_MS", "4500");
    let settings = load(MINIMAL, &short_lease, Role::Worker).expect("valid");
    assert_eq!(settings.worker.longest_send, Duration::from_millis(4_500));

    let mut short_grace = env();
    short_grace.set("GATEWAY_WORKER__SHUTDOWN_GRACE_MS", "10000");
    assert_eq!(
        error_key(load(MINIMAL, &short_grace, Role::Worker)),
        "worker.shutdown_grace_ms"
    );
}

#[test]
fn client_quotas_callback_hosts_and_admission_limits_are_read() {
    let text = format!(
        "{MINIMAL}rate_per_second = 50\nper_day = 200000\n\
         callback_hosts = [\"Hooks.Internal.example.com\"]\nadmin = true\n\
         [callbacks]\nrequire_https = false\nallow_private_addresses = true\n"
    );
    let text = text.replace(
        "fallback_template",
        "max_queue_seconds = { transactional = 5, bulk = 60 }\nfallback_template",
    );
    let settings = load(&text, &env(), Role::Api).expect("valid");
    let client = &settings.clients[0];
    assert_eq!(client.rate_per_second, Some(50));
    assert_eq!(client.per_day, Some(200_000));
    assert!(client.admin);
    assert!(client.allows_callback_host("hooks.internal.example.com"));
    assert!(client.allows_callback_host("a.hooks.internal.example.com"));
    assert!(!client.allows_callback_host("evilhooks.internal.example.com"));
    assert!(!client.allows_callback_host("internal.example.com"));
    assert!(!settings.callbacks.require_https);
    assert!(settings.callbacks.allow_private_addresses);
    let sender = &settings.senders[0];
    assert_eq!(sender.max_queue.transactional, Duration::from_secs(5));
    assert_eq!(sender.max_queue.bulk, Duration::from_secs(60));

    let defaults = load(MINIMAL, &env(), Role::Api).expect("valid");
    assert!(defaults.callbacks.require_https);
    assert!(!defaults.callbacks.allow_private_addresses);
    assert!(!defaults.clients[0].admin);
    assert!(defaults.clients[0].allows_callback_host("anything.example"));
    assert_eq!(
        defaults.senders[0].max_queue.transactional,
        Duration::from_secs(300)
    );
    assert_eq!(
        defaults.senders[0].max_queue.bulk,
        Duration::from_secs(14_400)
    );
}

#[test]
fn two_clients_with_one_key_stop_start_up_without_showing_it() {
    let text = format!(
        "{MINIMAL}\n[[clients]]\nname = \"other\"\nkey_env = \"OTHER_KEY\"\nsenders = [\"support\"]\n"
    );
    let mut same = env();
    same.set("OTHER_KEY", "key-1");
    let error = load(&text, &same, Role::Api).expect_err("one key for two clients");
    assert!(matches!(&error, ConfigError::Invalid { key, .. } if key == "clients[1].key_env"));
    assert!(!error.to_string().contains("key-1"), "{error}");
    let mut distinct = env();
    distinct.set("OTHER_KEY", "key-2");
    load(&text, &distinct, Role::Api).expect("distinct keys");
}

#[test]
fn plain_http_subscribers_need_https_off_and_bad_callback_hosts_are_named() {
    let text = format!(
        "{MINIMAL}\n[[subscribers]]\nname = \"crm\"\nurl = \"http://crm\"\nsecret_env = \"S\"\n"
    );
    assert_eq!(
        error_key(load(&text, &env(), Role::Api)),
        "subscribers[0].url"
    );
    let allowed = format!("{text}[callbacks]\nrequire_https = false\n");
    load(&allowed, &env(), Role::Api).expect("http allowed");

    let bad_host = format!("{MINIMAL}callback_hosts = [\"hooks/x\"]\n");
    assert_eq!(
        error_key(load(&bad_host, &env(), Role::Api)),
        "clients[0].callback_hosts"
    );
    let unknown_sender = format!("{MINIMAL}sender_quotas = {{ marketing = {{ per_day = 5 }} }}\n");
    assert_eq!(
        error_key(load(&unknown_sender, &env(), Role::Api)),
        "clients[0].sender_quotas"
    );
    let zero_day = format!("{MINIMAL}sender_quotas = {{ support = {{ per_day = 0 }} }}\n");
    assert_eq!(
        error_key(load(&zero_day, &env(), Role::Api)),
        "clients[0].sender_quotas.support.per_day"
    );
    let by_sender = format!("{MINIMAL}sender_quotas = {{ support = {{ rate_per_second = 5 }} }}\n");
    let settings = load(&by_sender, &env(), Role::Api).expect("valid");
    assert_eq!(
        settings.clients[0].sender_quotas,
        vec![(
            "106540352242922".to_owned(),
            Quota {
                rate_per_second: Some(5),
                per_day: None
            }
        )]
    );
    let zero_rate = format!("{MINIMAL}rate_per_second = 0\n");
    assert_eq!(
        error_key(load(&zero_rate, &env(), Role::Api)),
        "clients[0].rate_per_second"
    );
}

#[test]
fn a_waba_rate_caps_a_waba_that_has_numbers_here() {
    let text = format!("{MINIMAL}[[wabas]]\nid = \"102290129340398\"\nrate_per_second = 70\n");
    let settings = load(&text, &env(), Role::Worker).expect("valid");
    let cap = settings.waba_cap(&settings.senders[0]).expect("capped");
    assert_eq!(cap.rate_per_second, 70);

    let unknown = text.replace("\nid = \"102290129340398\"", "\nid = \"1\"");
    assert_eq!(
        error_key(load(&unknown, &env(), Role::Worker)),
        "wabas[0].id"
    );
    let zero = text.replace("= 70", "= 0");
    assert_eq!(
        error_key(load(&zero, &env(), Role::Worker)),
        "wabas[0].rate_per_second"
    );
    let twice = format!("{text}[[wabas]]\nid = \"102290129340398\"\nrate_per_second = 5\n");
    assert_eq!(error_key(load(&twice, &env(), Role::Worker)), "wabas[1].id");
}

#[test]
fn portfolios_name_their_wabas_and_hold_at_a_share_of_the_limit() {
    let text = format!(
        "{MINIMAL}[portfolios]\n\"777\" = {{ wabas = [\"102290129340398\"], limit_override = 2000, hold_at = 0.9 }}\n"
    );
    let settings = load(&text, &env(), Role::Worker).expect("valid");
    let portfolio = settings
        .portfolio_of(&settings.senders[0])
        .expect("the sender's portfolio");
    assert_eq!(portfolio.id, "777");
    assert_eq!(portfolio.limit_override, Some(2000));
    assert_eq!(portfolio.hold_after(2000), 1800);
    assert_eq!(portfolio.window, Duration::from_secs(86_400));

    let unknown_waba = text.replace("wabas = [\"102290129340398\"]", "wabas = [\"1\"]");
    assert_eq!(
        error_key(load(&unknown_waba, &env(), Role::Worker)),
        "portfolios.777.wabas"
    );
    let too_much = text.replace("0.9", "1.5");
    assert_eq!(
        error_key(load(&too_much, &env(), Role::Worker)),
        "portfolios.777.hold_at"
    );
}

#[test]
fn bulk_is_held_on_red_quality_unless_turned_off() {
    let defaults = load(MINIMAL, &env(), Role::Worker).expect("valid");
    assert!(defaults.worker.hold_bulk_on_red_quality);

    let off = format!("[worker]\nhold_bulk_on_red_quality = false\n{MINIMAL}");
    let settings = load(&off, &env(), Role::Worker).expect("valid");
    assert!(!settings.worker.hold_bulk_on_red_quality);

    let mut overridden = env();
    overridden.set("GATEWAY_WORKER__HOLD_BULK_ON_RED_QUALITY", "false");
    let settings = load(MINIMAL, &overridden, Role::Worker).expect("valid");
    assert!(!settings.worker.hold_bulk_on_red_quality);

    let bad = format!("[worker]\nhold_bulk_on_red_quality = \"sometimes\"\n{MINIMAL}");
    assert!(load(&bad, &env(), Role::Worker).is_err());
}
