use std::path::Path;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn assert_file_error(text: &str, key: &str, line: usize, needle: &str) {
    let err = ForgeConfig::parse_named(text, Path::new("app/forge.toml")).expect_err("config should be refused");
    let shown = err.to_string();
    assert_eq!(err.key(), Some(key), "{shown}");
    assert_eq!(err.line(), Some(line), "{shown}");
    assert!(shown.starts_with(&format!("app/forge.toml:{line}:")), "{shown}");
    assert!(shown.contains(&format!("`{key}`")), "{shown}");
    assert!(shown.contains(needle), "{shown}");
}

#[test]
fn empty_file_runs_every_role_with_defaults() {
    let config = ForgeConfig::parse_toml("").unwrap();
    assert_eq!(config, ForgeConfig::default());
    for role in Role::ALL {
        assert!(config.node.roles.contains(role), "{role}");
    }
    assert_eq!(config.gateway.port.get(), 8080);
    assert_eq!(config.database.url, None);
    assert_eq!(config.worker.queues["default"].concurrency.get(), 100);
}

#[test]
fn full_file_parses_into_typed_sections() {
    let text = r#"
[project]
name = "billing"

[database]
url = "postgres://u@db/billing"
pool_size = 25
connect_timeout = "2s"

[node]
roles = ["worker", "scheduler", "worker"]
capabilities = ["gpu"]

[gateway]
host = "0.0.0.0"
port = 9000
body_limit = "2MiB"

[worker]
poll_interval = "250ms"
lease = "1m"
[worker.queues.default]
concurrency = 3
[worker.queues.emails]
concurrency = 50

[observability]
log_level = "debug"
log_format = "json"
[observability.retention]
logs = "14d"

[auth]
jwt_secret = "s3cret"
jwt_issuer = "billing"
"#;
    let c = ForgeConfig::parse_toml(text).unwrap();
    assert_eq!(c.project.name, "billing");
    assert_eq!(c.database.pool_size.get(), 25);
    assert_eq!(c.database.connect_timeout.as_std().as_secs(), 2);
    assert_eq!(c.node.roles.iter().collect::<Vec<_>>(), vec![Role::Worker, Role::Scheduler]);
    assert!(!c.node.roles.contains(Role::Gateway));
    assert_eq!(c.node.capabilities, vec!["gpu"]);
    assert_eq!(c.gateway.port.get(), 9000);
    assert_eq!(c.gateway.body_limit.bytes(), 2 << 20);
    assert_eq!(c.worker.poll_interval.as_std().as_millis(), 250);
    assert_eq!(c.worker.queues.len(), 2);
    assert_eq!(c.worker.queues["emails"].concurrency.get(), 50);
    assert_eq!(c.observability.log_format, LogFormat::Json);
    assert_eq!(c.observability.retention.logs.as_std().as_secs(), 14 * 86_400);
    assert_eq!(c.observability.retention.traces.as_std().as_secs(), 3 * 86_400);
    assert_eq!(c.auth.jwt_secret.as_deref(), Some("s3cret"));
    assert!(!format!("{:?}", c.auth).contains("s3cret"), "secrets stay out of Debug output");
}

#[test]
fn unknown_key_names_key_and_line() {
    assert_file_error("[gateway]\nhost = \"x\"\nprot = 80\n", "gateway.prot", 3, "unknown field");
    assert_file_error("colour = \"blue\"\n", "colour", 1, "unknown field");
    assert_file_error("[gatewy]\nport = 1\n", "gatewy", 1, "unknown field");
}

#[test]
fn wrong_type_names_key_and_line() {
    assert_file_error("[database]\n\npool_size = \"ten\"\n", "database.pool_size", 3, "");
    assert_file_error("[node]\nroles = \"worker\"\n", "node.roles", 2, "");
    assert_file_error("[gateway]\nrequest_timeout = 30\n", "gateway.request_timeout", 2, "duration");
}

#[test]
fn impossible_values_name_key_and_line() {
    assert_file_error("[gateway]\nport = 0\n", "gateway.port", 2, "port 0 is not allowed");
    assert_file_error("[gateway]\nport = 70000\n", "gateway.port", 2, "port 70000");
    assert_file_error("[node]\nroles = []\n", "node.roles", 2, "at least one");
    assert_file_error("[node]\nroles = [\"cook\"]\n", "node.roles[0]", 2, "unknown variant `cook`");
    assert_file_error(
        "[worker.queues.default]\nconcurrency = 0\n",
        "worker.queues.default.concurrency",
        2,
        "at least 1",
    );
    assert_file_error("[worker]\nlease = \"0s\"\n", "worker.lease", 2, "greater than zero");
    assert_file_error("[database]\npool_size = -3\n", "database.pool_size", 2, "-3 is not allowed");
    assert_file_error("[worker.queues.\"bad queue\"]\nconcurrency = 1\n", "worker.queues", 1, "bad queue");
}

#[test]
fn syntax_error_names_line() {
    let err = ForgeConfig::parse_named("[gateway]\nport = = 3\n", Path::new("forge.toml")).unwrap_err();
    assert_eq!(err.line(), Some(2), "{err}");
    assert!(err.to_string().starts_with("forge.toml:2:"), "{err}");
}

#[test]
fn environment_overrides_the_file() {
    let text = "[gateway]\nport = 9000\n[database]\npool_size = 3\n";
    let vars = env(&[
        ("FORGE_PORT", "7000"),
        ("DATABASE_URL", "postgres://x@h/db"),
        ("FORGE_DATABASE_POOL_SIZE", "12"),
        ("FORGE_NODE_ROLES", "worker, scheduler"),
        ("FORGE_WORKER_POLL_INTERVAL", "50ms"),
        ("FORGE_WORKER_QUEUES", "{ mail = { concurrency = 2 } }"),
        ("FORGE_AUTH_JWT_SECRET", "from-env"),
        ("HOME", "/root"),
        ("FORGE_UNRELATED", "ignored: not a section"),
    ]);
    let c = ForgeConfig::parse_with_env(text, Path::new("forge.toml"), vars).unwrap();
    assert_eq!(c.gateway.port.get(), 7000);
    assert_eq!(c.database.url.as_deref(), Some("postgres://x@h/db"));
    assert_eq!(c.database.pool_size.get(), 12);
    assert_eq!(c.node.roles.iter().collect::<Vec<_>>(), vec![Role::Worker, Role::Scheduler]);
    assert_eq!(c.worker.poll_interval.as_std().as_millis(), 50);
    assert_eq!(c.worker.queues.keys().collect::<Vec<_>>(), vec!["mail"]);
    assert_eq!(c.auth.jwt_secret.as_deref(), Some("from-env"));
}

#[test]
fn environment_reaches_the_keys_of_a_table_inside_a_section() {
    let vars = env(&[
        ("FORGE_API_WEBHOOKS_CONCURRENCY", "7"),
        ("FORGE_WORKER_QUEUES_DEFAULT_CONCURRENCY", "3"),
        ("FORGE_WORKER_LEASE", "9s"),
    ]);
    let c = ForgeConfig::parse_with_env("[api]\nenabled = true\n", Path::new("forge.toml"), vars).unwrap();
    assert_eq!(c.api.webhooks.concurrency, 7);
    assert_eq!(c.worker.queues["default"].concurrency.get(), 3);
    assert_eq!(c.worker.lease.as_std().as_secs(), 9);

    let err = ForgeConfig::parse_with_env("", Path::new("forge.toml"), env(&[("FORGE_API_WEBHOOKS_CONCURENCY", "7")]))
        .unwrap_err();
    assert!(err.to_string().contains("FORGE_API_WEBHOOKS_CONCURENCY"), "{err}");
    assert_eq!(err.key(), Some("api.webhooks.concurency"), "{err}");
}

#[test]
fn long_form_wins_over_alias() {
    let vars = env(&[("FORGE_PORT", "7000"), ("FORGE_GATEWAY_PORT", "7001")]);
    let c = ForgeConfig::parse_with_env("", Path::new("forge.toml"), vars).unwrap();
    assert_eq!(c.gateway.port.get(), 7001);
}

#[test]
fn bad_environment_value_names_the_variable() {
    let err = ForgeConfig::parse_with_env("", Path::new("forge.toml"), env(&[("FORGE_PORT", "0")])).unwrap_err();
    assert!(matches!(&err, ConfigError::Env { var, .. } if var == "FORGE_PORT"), "{err}");
    assert_eq!(err.key(), Some("gateway.port"));

    let err =
        ForgeConfig::parse_with_env("", Path::new("forge.toml"), env(&[("FORGE_GATEWAY_PORTT", "1")])).unwrap_err();
    assert!(err.to_string().contains("FORGE_GATEWAY_PORTT"), "{err}");
    assert_eq!(err.key(), Some("gateway.portt"));

    let err = ForgeConfig::parse_with_env("", Path::new("forge.toml"), env(&[("FORGE_NODE_ROLES", "")])).unwrap_err();
    assert!(err.to_string().contains("FORGE_NODE_ROLES"), "{err}");
}

#[test]
fn a_bad_file_is_reported_before_the_environment() {
    let err =
        ForgeConfig::parse_with_env("[gateway]\nport = 0\n", Path::new("forge.toml"), env(&[("FORGE_PORT", "1")]))
            .unwrap_err();
    assert_eq!(err.line(), Some(2));
}

#[test]
fn request_spans_is_a_number_per_second_or_all() {
    let c = ForgeConfig::parse_toml("").unwrap();
    assert_eq!(c.observability.request_spans, RequestSpans::PerSecond(100));
    assert_eq!(c.observability.slow_request.as_std(), std::time::Duration::from_millis(100));
    let c = ForgeConfig::parse_toml("[observability]\nrequest_spans = \"all\"\nslow_request = \"1s\"\n").unwrap();
    assert_eq!(c.observability.request_spans, RequestSpans::All);
    assert_eq!(c.observability.slow_request.as_std(), std::time::Duration::from_secs(1));
    let c = ForgeConfig::parse_toml("[observability]\nrequest_spans = 0\n").unwrap();
    assert_eq!(c.observability.request_spans, RequestSpans::PerSecond(0));
    for (value, var) in [("all", RequestSpans::All), ("7", RequestSpans::PerSecond(7))] {
        let vars = env(&[("FORGE_OBSERVABILITY_REQUEST_SPANS", value)]);
        let c = ForgeConfig::parse_with_env("", Path::new("forge.toml"), vars).unwrap();
        assert_eq!(c.observability.request_spans, var);
    }
    assert_file_error("[observability]\nrequest_spans = \"some\"\n", "observability.request_spans", 2, "\"all\"");
    assert_file_error("[observability]\nrequest_spans = -1\n", "observability.request_spans", 2, "spans per second");
    let round_trip = toml::to_string(&ForgeConfig::default()).unwrap();
    assert!(round_trip.contains("request_spans = 100"), "{round_trip}");
}
