//! The files under deploy/ against the code: every metric the Grafana
//! dashboard and the Prometheus alert rules query is a family the gateway
//! exports (a renamed metric fails here, not on a blank dashboard in
//! production); the alert rules are complete; the Kubernetes and compose
//! configuration loads with the secrets the manifests provide; ports, probe
//! paths and grace periods match the configuration. With `promtool` on PATH
//! the rules and the scrape configuration are also checked by Prometheus'
//! own tool.
//!
//! No YAML parser: the few things read from YAML are found line by line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use gateway_config::{Environment, Role, Settings};
use gateway_notify::NotifyMetrics;
use gateway_telemetry::{Metrics, PROCESS_FAMILY_NAMES};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every family a gateway process exports: the telemetry crate's (with the
/// process_* ones) and the notification families workers add.
struct Families {
    names: BTreeSet<String>,
    histograms: BTreeSet<String>,
}

impl Families {
    fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }
}

fn exported_families() -> Families {
    let metrics = Metrics::new();
    let mut names: BTreeSet<String> = metrics.family_names().into_iter().collect();
    names.extend(NotifyMetrics::FAMILY_NAMES.iter().map(|n| n.to_string()));
    let mut histograms: BTreeSet<String> = metrics.histogram_names().into_iter().collect();
    histograms.extend(NotifyMetrics::HISTOGRAM_NAMES.iter().map(|n| n.to_string()));
    Families { names, histograms }
}

/// Series Prometheus makes itself rather than scraping them.
const PROMETHEUS_SERIES: &[&str] = &["up"];

// ---------------------------------------------------------------------------
// PromQL: the metric names an expression selects.

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names in a PromQL expression (Grafana variables such as
/// `$sender` and `$__rate_interval` allowed): identifiers that are not
/// functions, keywords, label names in `{...}` or in `by (...)` lists, nor
/// inside strings or `[...]` ranges.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let skip_until = |from: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        let mut j = from;
        let mut quote = None;
        while j < chars.len() {
            let c = chars[j];
            match quote {
                Some(_) if c == '\\' => j += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
                None if c == open => depth += 1,
                None if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return j + 1;
                    }
                }
                None => {}
            }
            j += 1;
        }
        j
    };
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != c {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            i = j + 1;
        } else if c == '{' {
            i = skip_until(i, '{', '}');
        } else if c == '[' {
            i = skip_until(i, '[', ']');
        } else if c == '$' {
            // A Grafana variable: $name, ${name} or ${name:format}.
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_until(i, '{', '}');
            } else {
                while i < chars.len() && is_part(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || c == '.' {
            // Numbers and durations (0.99, 1e3, 5m).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_start(c) {
            let start = i;
            while i < chars.len() && is_part(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let following: String = chars[next..]
                .iter()
                .take_while(|c| is_part(**c))
                .collect::<String>()
                .to_ascii_lowercase();
            // A function call, or an aggregation with its grouping first
            // (`sum by (le) (...)`).
            let called =
                chars.get(next) == Some(&'(') || following == "by" || following == "without";
            let lower = word.to_ascii_lowercase();
            if called && LABEL_LISTS.contains(&lower.as_str()) {
                i = skip_until(next, '(', ')');
            } else if !called && !KEYWORDS.contains(&lower.as_str()) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The family a queried series belongs to: a histogram's `_bucket`, `_sum`
/// and `_count` series belong to the histogram.
fn family_of<'a>(name: &'a str, families: &Families) -> Option<&'a str> {
    if families.contains(name) || PROMETHEUS_SERIES.contains(&name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .find(|base| families.histograms.contains(*base))
}

/// The names in `exprs` that are not exported, with the expression they are in.
fn unknown_metrics(exprs: &[(String, String)], families: &Families) -> Vec<String> {
    let mut unknown = Vec::new();
    for (place, expr) in exprs {
        let names = metric_names(expr);
        if names.is_empty() {
            unknown.push(format!("{place}: no metric at all in `{expr}`"));
        }
        for name in names {
            if family_of(&name, families).is_none() {
                unknown.push(format!("{place}: `{name}` in `{expr}`"));
            }
        }
    }
    unknown
}

// ---------------------------------------------------------------------------
// The dashboard and the alert rules.

/// Every `expr` of the dashboard (with its panel's title), and the metric of
/// every `label_values(metric, label)` variable query.
fn dashboard_exprs() -> Vec<(String, String)> {
    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/gateway.json")).expect("valid JSON");
    fn walk(value: &Value, title: &str, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                let title = map.get("title").and_then(Value::as_str).unwrap_or(title);
                for (key, child) in map {
                    match (key.as_str(), child) {
                        ("expr", Value::String(expr)) => {
                            out.push((format!("panel `{title}`"), expr.clone()))
                        }
                        ("definition", Value::String(q)) | ("query", Value::String(q)) => {
                            if let Some(args) = q
                                .trim()
                                .strip_prefix("label_values(")
                                .and_then(|a| a.strip_suffix(')'))
                            {
                                // label_values(metric, label): the metric only.
                                let metric = args.rsplit_once(',').map_or(args, |(m, _)| m);
                                out.push((format!("variable query `{q}`"), metric.to_owned()));
                            }
                        }
                        _ => walk(child, title, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, title, out)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    walk(&dashboard, "dashboard", &mut exprs);
    exprs
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The lines of the block scalar (`key: |`) or nested mapping that follows
/// line `at`: the lines indented deeper than it, with blank lines kept.
fn block_after(lines: &[&str], at: usize) -> Vec<String> {
    let base = indent(lines[at]);
    let body: Vec<&str> = lines[at + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > base)
        .copied()
        .collect();
    let depth = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent(l))
        .min()
        .unwrap_or(0);
    let mut block: Vec<String> = body
        .iter()
        .map(|l| l.get(depth..).unwrap_or("").to_owned())
        .collect();
    while block.last().is_some_and(|l| l.trim().is_empty()) {
        block.pop();
    }
    block
}

/// Every `expr:` of a rules file, inline or as a block scalar.
fn yaml_exprs(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut exprs = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            exprs.push(block_after(&lines, at).join("\n"));
        } else {
            let unquoted = rest
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .or_else(|| rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
                .unwrap_or(rest);
            exprs.push(unquoted.to_owned());
        }
    }
    exprs
}

/// The rules of a rules file, one chunk of lines per `- alert:`.
fn alert_rules(text: &str) -> Vec<(String, String)> {
    let mut rules: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.trim_start().strip_prefix("- alert:") {
            rules.push((name.trim().to_owned(), String::new()));
        } else if line.trim_start().starts_with("- name:") {
            // A new group ends the rule before it.
            rules.push((String::new(), String::new()));
        }
        if let Some((_, body)) = rules.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    rules.retain(|(name, _)| !name.is_empty());
    rules
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let families = exported_families();
    let exprs = dashboard_exprs();
    assert!(exprs.len() > 20, "the dashboard's queries were not found");
    let unknown = unknown_metrics(&exprs, &families);
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics the gateway does not export:\n{}",
        unknown.join("\n")
    );
    let used: BTreeSet<String> = exprs
        .iter()
        .flat_map(|(_, e)| metric_names(e))
        .filter_map(|n| family_of(&n, &families).map(str::to_owned))
        .collect();
    for wanted in [
        "gateway_messages_accepted_total",
        "gateway_messages_sent_total",
        "gateway_sender_effective_rate",
        "gateway_queue_depth",
        "gateway_queue_oldest_age_seconds",
        "gateway_accept_to_send_seconds",
        "gateway_accept_to_delivered_seconds",
        "gateway_graph_errors_total",
        "gateway_template_fallbacks_total",
        "gateway_message_statuses_total",
        "gateway_webhook_events_total",
        "gateway_worker_senders_owned",
        "gateway_lease_changes_total",
        "gateway_redis_errors_total",
        "gateway_sender_quality_rating",
        "gateway_sender_bulk_held",
        "gateway_billable_messages_total",
    ] {
        assert!(used.contains(wanted), "no dashboard panel shows {wanted}");
    }
}

#[test]
fn the_alert_rules_query_only_exported_metrics() {
    let families = exported_families();
    let text = read("deploy/prometheus/alerts.yml");
    let exprs: Vec<(String, String)> = yaml_exprs(&text)
        .into_iter()
        .map(|e| ("alerts.yml".to_owned(), e))
        .collect();
    assert!(exprs.len() >= 6, "the alert expressions were not found");
    let unknown = unknown_metrics(&exprs, &families);
    assert!(
        unknown.is_empty(),
        "alert rules query metrics the gateway does not export:\n{}",
        unknown.join("\n")
    );
    let used: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| metric_names(e)).collect();
    for wanted in [
        "gateway_queue_oldest_age_seconds",
        "gateway_sender_paused",
        "gateway_graph_errors_total",
        "gateway_worker_senders_owned",
        "gateway_webhook_signature_failures_total",
        "gateway_notification_dead_letters_total",
        "gateway_webhooks_refused_total",
        "gateway_notifications_dropped_total",
        "gateway_sender_quality_rating",
    ] {
        assert!(used.contains(wanted), "no alert rule watches {wanted}");
    }
}

#[test]
fn every_alert_waits_and_says_how_bad_and_what() {
    let text = read("deploy/prometheus/alerts.yml");
    let rules = alert_rules(&text);
    assert_eq!(
        rules.len(),
        yaml_exprs(&text).len(),
        "one expr per alert (recording rules belong elsewhere)"
    );
    for (name, body) in &rules {
        for field in ["expr:", "for:", "severity:", "summary:", "description:"] {
            assert!(body.contains(field), "alert {name} has no `{field}`");
        }
        assert!(
            body.contains("severity: critical")
                || body.contains("severity: warning")
                || body.contains("severity: info"),
            "alert {name}: severity is critical, warning or info"
        );
    }
    let config = read("deploy/prometheus/prometheus.yml");
    let lines: Vec<&str> = config.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("rule_files:"))
        .expect("prometheus.yml has rule_files");
    assert!(
        block_after(&lines, at)
            .iter()
            .any(|l| l.trim() == "- alerts.yml"),
        "prometheus.yml loads alerts.yml"
    );
}

#[test]
fn the_metric_check_catches_a_renamed_metric() {
    let families = exported_families();
    for family in PROCESS_FAMILY_NAMES {
        assert!(families.contains(family), "{family} is exported");
    }
    let exprs = |e: &str| vec![("test".to_owned(), e.to_owned())];
    let fine = r#"histogram_quantile(0.99, sum by (le, sender) (rate(gateway_accept_to_send_seconds_bucket{sender=~"$sender", code!="x_total"}[$__rate_interval]))) > on (sender) group_left max by (sender) (gateway_queue_depth offset 5m) and up{job="gateway-api"} == 1 or rate(process_cpu_seconds_total[${__range}])"#;
    assert_eq!(
        metric_names(fine),
        [
            "gateway_accept_to_send_seconds_bucket",
            "gateway_queue_depth",
            "up",
            "process_cpu_seconds_total"
        ]
    );
    assert!(unknown_metrics(&exprs(fine), &families).is_empty());
    for renamed in [
        "sum by (sender) (rate(gateway_messages_send_total[5m]))",
        "histogram_quantile(0.5, sum by (le) (rate(gateway_accept_to_sent_seconds_bucket[5m])))",
        "max(gateway_messages_sent_total_bucket)",
        "max(gateway_queue_oldest_age_seconds_count)",
        "vector(1)",
    ] {
        assert_eq!(
            unknown_metrics(&exprs(renamed), &families).len(),
            1,
            "{renamed} is flagged"
        );
    }
}

// ---------------------------------------------------------------------------
// Configuration, secrets, ports and probes.

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A YAML scalar as the shell of `docker compose` would see it: quotes
/// removed, `${NAME:-default}` replaced by its default.
fn scalar(raw: &str) -> String {
    let raw = raw.trim();
    let raw = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    match raw
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .and_then(|r| r.split_once(":-"))
    {
        Some((_, default)) => default.to_owned(),
        None => raw.to_owned(),
    }
}

/// The upper-case keys (and values) of the mapping that follows the first
/// line containing `marker`.
fn env_after(text: &str, marker: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("`{marker}` not found"));
    block_after(&lines, at)
        .iter()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| is_env_name(k.trim()))
        .map(|(k, v)| (k.trim().to_owned(), scalar(v)))
        .collect()
}

/// Environment variables a manifest sets: `- name: UPPER_CASE` followed by
/// `value: ...`, or by `valueFrom` (a stand-in value then).
fn manifest_env(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter_map(|(at, l)| {
            let name = l.trim_start().strip_prefix("- name: ")?.trim();
            is_env_name(name).then(|| {
                let value = lines
                    .get(at + 1)
                    .and_then(|next| next.trim_start().strip_prefix("value:"))
                    .map_or_else(|| format!("test-{name}"), scalar);
                (name.to_owned(), value)
            })
        })
        .collect()
}

fn names(env: &[(String, String)]) -> Vec<String> {
    env.iter().map(|(k, _)| k.clone()).collect()
}

/// The TOML in the ConfigMap, without its indentation.
fn configmap_toml() -> String {
    let text = read("deploy/k8s/configmap.yaml");
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == "gateway.toml: |")
        .expect("the ConfigMap has gateway.toml");
    block_after(&lines, at).join("\n")
}

/// The number after `key:` on the first line that has it.
fn number_after(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|v| v.trim().trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no `{key}` number"))
}

#[test]
fn kubernetes_manifests_match_the_configuration() {
    let toml = configmap_toml();
    let secret = read("deploy/k8s/secret.example.yaml");
    let secret_keys = names(&env_after(&secret, "stringData:"));
    let api = read("deploy/k8s/api.yaml");
    let worker = read("deploy/k8s/worker.yaml");

    // Each Deployment gives its process every secret it needs (and loads
    // the ConfigMap's file with its GATEWAY_* overrides).
    let api_settings = Settings::from_toml(
        &toml,
        "configmap",
        &Environment::from_pairs(manifest_env(&api)),
        Role::Api,
    )
    .unwrap_or_else(|e| panic!("the api's configuration: {e}"));
    let worker_settings = Settings::from_toml(
        &toml,
        "configmap",
        &Environment::from_pairs(manifest_env(&worker)),
        Role::Worker,
    )
    .unwrap_or_else(|e| panic!("the worker's configuration: {e}"));
    for name in worker_settings.secret_variables() {
        assert!(
            secret_keys.iter().any(|k| k == name),
            "the Secret template has no {name}"
        );
    }
    for name in names(&manifest_env(&api))
        .into_iter()
        .chain(names(&manifest_env(&worker)))
    {
        assert!(
            name.starts_with("GATEWAY_") && name.contains("__") || secret_keys.contains(&name),
            "{name} is neither an override nor a key of the Secret"
        );
    }

    // Ports and probes.
    assert_eq!(api_settings.api.listen.port(), 8080);
    assert_eq!(worker_settings.worker.listen.port(), 9090);
    for (text, port) in [(&api, 8080), (&worker, 9090)] {
        assert!(text.contains(&format!("containerPort: {port}")));
        assert!(text.contains(&format!("prometheus.io/port: \"{port}\"")));
        assert!(text.contains("httpGet: {path: /readyz"));
        assert!(text.contains("httpGet: {path: /healthz"));
        assert!(text.contains("--config\", \"/etc/gateway/gateway.toml\""));
        assert!(text.contains("mountPath: /etc/gateway"));
    }

    // A stopping worker gets the time to finish its sends and hand over.
    let w = &worker_settings.worker;
    let needed = w.shutdown_grace + w.lease_ttl + w.lease_ttl;
    let grace = number_after(&worker, "terminationGracePeriodSeconds:");
    assert!(
        grace > needed.as_secs(),
        "terminationGracePeriodSeconds {grace} s <= {needed:?} a worker may take to stop"
    );
    for kind in [
        "kind: PodDisruptionBudget",
        "kind: HorizontalPodAutoscaler",
        "name: gateway_queue_oldest_age_seconds",
    ] {
        assert!(worker.contains(kind), "worker.yaml has no `{kind}`");
    }
}

#[test]
fn the_compose_stack_starts_every_process() {
    let compose = read("deploy/compose.yaml");
    let env = env_after(&compose, "environment: &gateway-env");
    let file = read("config/production.example.toml");
    for role in [Role::Api, Role::Worker] {
        let settings = Settings::from_toml(
            &file,
            "production.example.toml",
            &Environment::from_pairs(env.clone()),
            role,
        )
        .unwrap_or_else(|e| panic!("{role:?} in compose: {e}"));
        assert_eq!(
            settings.graph.base_url.trim_end_matches('/'),
            "http://sandbox:8090"
        );
        assert_eq!(settings.api.listen.port(), 8080);
        assert_eq!(settings.worker.listen.port(), 9090);
    }
    // The sandbox signs its webhooks for the api.
    let mut env = Environment::from_pairs(env);
    let webhook_url = compose
        .lines()
        .find_map(|l| l.trim().strip_prefix("GATEWAY_SANDBOX__WEBHOOK_URL:"))
        .map(scalar)
        .expect("the sandbox posts its webhooks to the api");
    assert_eq!(webhook_url, "http://api:8080/webhook");
    env.set("GATEWAY_SANDBOX__WEBHOOK_URL", webhook_url);
    Settings::from_toml(&file, "production.example.toml", &env, Role::Sandbox)
        .unwrap_or_else(|e| panic!("the sandbox in compose: {e}"));
    for needed in [
        "--appendonly\", \"yes\"",
        "replicas: 3",
        "./prometheus:/etc/prometheus",
        "./grafana/provisioning:/etc/grafana/provisioning",
        "\"sandbox\", \"--config\"",
        "config/production.example.toml",
    ] {
        assert!(compose.contains(needed), "compose.yaml has no `{needed}`");
    }
}

#[test]
fn the_image_builds_the_binary_and_runs_it_unprivileged() {
    let dockerfile = read("deploy/Dockerfile");
    for needed in [
        "FROM rust:1-bookworm AS builder",
        "cargo build --release --locked -p gateway",
        "FROM debian:bookworm-slim",
        "ca-certificates",
        "COPY config ./config",
        "USER 10001",
        "ENTRYPOINT [\"gateway\"]",
    ] {
        assert!(
            dockerfile.contains(needed),
            "the Dockerfile has no `{needed}`"
        );
    }
}

// ---------------------------------------------------------------------------
// Prometheus' own checks, when its tool is installed.

#[test]
fn promtool_accepts_the_rules_and_the_configuration() {
    let Ok(version) = Command::new("promtool").arg("--version").output() else {
        eprintln!(
            "promtool is not on PATH: skipping `promtool check` (Debian: apt-get install prometheus)"
        );
        return;
    };
    assert!(version.status.success(), "promtool --version failed");
    for args in [
        ["check", "rules", "deploy/prometheus/alerts.yml"],
        ["check", "config", "deploy/prometheus/prometheus.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(root())
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
