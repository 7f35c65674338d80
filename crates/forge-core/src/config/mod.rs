//! `forge.toml`, parsed into typed sections.
//!
//! Every key has a default, so an empty file (or none at all) gives a node that runs every role
//! on the embedded PostgreSQL. An unknown key, a value of the wrong type or an impossible value
//! (port 0, no roles, concurrency 0) is a [`ConfigError`] naming the file, the key and the line.
//!
//! Environment variables override the file: `DATABASE_URL` sets `database.url`, `FORGE_PORT`
//! sets `gateway.port`, and any key can be set as `FORGE_<SECTION>_<KEY>` (upper case), for
//! example `FORGE_DATABASE_POOL_SIZE=20` or `FORGE_NODE_ROLES=worker,scheduler`. The
//! `FORGE_<SECTION>_<KEY>` form wins over the two short aliases.
//!
//! ```
//! use forge_core::config::{ForgeConfig, Role};
//!
//! let text = r#"
//! [node]
//! roles = ["worker"]
//!
//! [worker.queues.emails]
//! concurrency = 4
//! "#;
//! let config = ForgeConfig::parse_toml(text)?;
//! assert_eq!(config.node.roles.iter().collect::<Vec<_>>(), vec![Role::Worker]);
//! assert_eq!(config.worker.queues["emails"].concurrency.get(), 4);
//! # Ok::<(), forge_core::config::ConfigError>(())
//! ```

mod api;
mod error;
mod load;
mod realtime;
mod units;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, de};

pub use api::{ApiConfig, ClientRateLimit, WebhookConfig};
pub use error::ConfigError;
pub use realtime::RealtimeConfig;
pub use units::{ByteSize, Duration, IpRange, Port};

/// The whole of `forge.toml`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ForgeConfig {
    /// `[project]`: what the application is called.
    pub project: ProjectConfig,
    /// `[database]`: where PostgreSQL is and how to pool connections to it.
    pub database: DatabaseConfig,
    /// `[node]`: what this process does in the cluster.
    pub node: NodeConfig,
    /// `[gateway]`: the HTTP server.
    pub gateway: GatewayConfig,
    /// `[worker]`: queues and how jobs are claimed.
    pub worker: WorkerConfig,
    /// `[observability]`: logging, and how long logs, traces and metrics are kept.
    pub observability: ObservabilityConfig,
    /// `[auth]`: how callers prove who they are.
    pub auth: AuthConfig,
    /// `[dashboard]`: the built-in dashboard and its `/_api`.
    pub dashboard: DashboardConfig,
    /// `[api]`: the job API for outside clients (`/v1`).
    pub api: ApiConfig,
    /// `[realtime]`: live queries over `/ws` and `/sse`.
    pub realtime: RealtimeConfig,
}

/// `[dashboard]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DashboardConfig {
    /// Whether `/_api` (and the dashboard) is served. Default `true`.
    pub enabled: bool,
    /// In development mode (`[project] mode`), answer a request without credentials when it
    /// comes from this machine: the peer and the listener address are loopback, the `Host` is
    /// a loopback name and no `Forwarded`/`X-Forwarded-*` header is present. Every other
    /// request needs [`DashboardConfig::role`]. Default `true`.
    pub open_on_loopback: bool,
    /// The role the dashboard and its `/_api` require (a JWT role or an API key's). Default
    /// `"forge:admin"`: an application's own `admin` role does not open the operator API.
    pub role: String,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self { enabled: true, open_on_loopback: true, role: "forge:admin".to_owned() }
    }
}

/// How a node runs: `[project] mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Mode {
    /// On a developer's machine: the dashboard answers local requests without credentials.
    #[default]
    Development,
    /// Deployed: nothing is open without credentials.
    Production,
}

/// `[project]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ProjectConfig {
    /// The application's name, shown in the dashboard and logs. Default `"forge-app"`.
    pub name: String,
    /// `"development"` (the default) or `"production"` (set `FORGE_PROJECT_MODE=production`
    /// where you deploy): in production nothing is open without credentials.
    pub mode: Mode,
}

impl Default for ProjectConfig {
    fn default() -> Self {
        Self { name: "forge-app".to_owned(), mode: Mode::Development }
    }
}

/// `[database]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DatabaseConfig {
    /// A `postgres://` URL. Unset (the default): Forge starts its own embedded cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Connections in the pool. Default 10.
    #[serde(deserialize_with = "at_least_one_u32")]
    pub pool_size: NonZeroU32,
    /// How long to wait for a new connection. Default `"5s"`.
    pub connect_timeout: Duration,
    /// How long a caller waits for a free pooled connection. Default `"5s"`.
    pub acquire_timeout: Duration,
    /// How long an idle connection stays open. Default `"10m"`.
    pub idle_timeout: Duration,
    /// Where the embedded cluster lives, relative to the project folder. Default `".forge/postgres"`.
    pub embedded_dir: PathBuf,
    /// The application's own migrations, run after Forge's. Default `"migrations"`.
    pub migrations_dir: PathBuf,
    /// Connections of the control plane's own pool: node and lease heartbeats, the completer
    /// writing job outcomes, and the leader's duties use it, so application work (handlers,
    /// transactional jobs, mutations) holding every connection of `pool_size` cannot stop a
    /// node from renewing its leases. Default 4.
    pub control_pool_size: NonZeroU32,
    /// How long a migration may wait for a table lock before it fails (and nothing is
    /// applied), instead of queueing every query on that table behind it. Default `"10s"`.
    pub migration_lock_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: NonZeroU32::new(10).expect("10 is not zero"),
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            embedded_dir: PathBuf::from(".forge/postgres"),
            migrations_dir: PathBuf::from("migrations"),
            migration_lock_timeout: Duration::from_secs(10),
            control_pool_size: NonZeroU32::new(4).expect("4 is not zero"),
        }
    }
}

/// What a node does. A node may take any non-empty set of roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves HTTP: `/rpc`, `/health`, `/ready`, the dashboard.
    Gateway,
    /// Claims and runs jobs.
    Worker,
    /// Campaigns for leadership and, while leader, fires crons and runs maintenance.
    Scheduler,
    /// Runs queries, mutations and actions called through the gateway.
    Function,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 4] = [Role::Gateway, Role::Worker, Role::Scheduler, Role::Function];

    /// The name used in `forge.toml`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Worker => "worker",
            Role::Scheduler => "scheduler",
            Role::Function => "function",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A non-empty set of [`Role`]s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Roles(Vec<Role>);

impl Roles {
    /// Every role: what an empty `forge.toml` gives.
    pub fn all() -> Self {
        Self(Role::ALL.to_vec())
    }

    /// The given roles, or `None` if there are none.
    pub fn new(roles: impl IntoIterator<Item = Role>) -> Option<Self> {
        let mut roles: Vec<Role> = roles.into_iter().collect();
        roles.sort();
        roles.dedup();
        (!roles.is_empty()).then_some(Self(roles))
    }

    /// Whether the node takes `role`.
    pub fn contains(&self, role: Role) -> bool {
        self.0.contains(&role)
    }

    /// The roles, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        self.0.iter().copied()
    }
}

impl Default for Roles {
    fn default() -> Self {
        Self::all()
    }
}

impl<'de> Deserialize<'de> for Roles {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let roles = Vec::<Role>::deserialize(deserializer)?;
        Roles::new(roles).ok_or_else(|| {
            de::Error::custom("roles must name at least one of \"gateway\", \"worker\", \"scheduler\", \"function\"")
        })
    }
}

/// `[node]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The roles this node takes. Default: all of them.
    pub roles: Roles,
    /// Capabilities this node offers (for example `"gpu"`); a job that requires one runs only on
    /// nodes that have it. Default: none.
    pub capabilities: Vec<String>,
    /// How often the node records that it is alive; non-leaders campaign for leadership as often.
    /// Default `"5s"`.
    pub heartbeat_interval: Duration,
    /// A node silent for this long is declared dead by the leader, and its running jobs are
    /// rescued at once. Default `"30s"`.
    pub dead_after: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            roles: Roles::all(),
            capabilities: Vec::new(),
            heartbeat_interval: Duration::from_secs(5),
            dead_after: Duration::from_secs(30),
        }
    }
}

/// `[gateway]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct GatewayConfig {
    /// Address to listen on. Default `"127.0.0.1"`.
    pub host: String,
    /// Port to listen on. Default 8080.
    pub port: Port,
    /// Largest request body accepted; larger gets 413. Default `"1MiB"`.
    pub body_limit: ByteSize,
    /// Longest time a request may take. Default `"30s"`.
    pub request_timeout: Duration,
    /// Origins browsers may call the gateway from (CORS): exact origins such as
    /// `"https://app.example.com"`, or `"*"` for any. Default: none (no CORS headers).
    pub cors_origins: Vec<String>,
    /// How long a client may take to send a request's headers before its connection is closed
    /// (slow-header attacks). Default `"10s"`.
    pub header_read_timeout: Duration,
    /// Open connections at most; more wait to be accepted. Default 4096.
    pub max_connections: NonZeroUsize,
    /// Requests handled at once at most; more are answered `503` with `Retry-After: 1` at once
    /// (so a flood of calls does not starve the engine). `/health` and `/ready` are exempt.
    /// Default 512.
    pub max_concurrent_requests: NonZeroUsize,
    /// Proxies whose `X-Forwarded-For` is believed: addresses or CIDR ranges. A request from
    /// one of them is attributed (rate limits, logs) to the address its proxy names; from
    /// anywhere else the header is ignored. Default: none.
    pub trusted_proxies: Vec<IpRange>,
    /// When set, `GET /metrics` needs `Authorization: Bearer <token>`. Default: unset (open).
    pub metrics_token: Option<String>,
    /// A folder of static files (a front end: HTML, JavaScript, CSS) served for `GET` requests
    /// no other route answers, `index.html` for a folder; relative to the project folder.
    /// Default: unset (unknown paths answer 404).
    pub static_dir: Option<std::path::PathBuf>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: Port::new(8080).expect("8080 is not zero"),
            body_limit: ByteSize::new(1 << 20),
            request_timeout: Duration::from_secs(30),
            cors_origins: Vec::new(),
            header_read_timeout: Duration::from_secs(10),
            max_connections: NonZeroUsize::new(4096).expect("4096 is not zero"),
            max_concurrent_requests: NonZeroUsize::new(512).expect("512 is not zero"),
            trusted_proxies: Vec::new(),
            metrics_token: None,
            static_dir: None,
        }
    }
}

/// `[worker]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Queues this node works, each with its concurrency. Default: `default` with 100.
    #[serde(deserialize_with = "queue_map")]
    pub queues: BTreeMap<String, QueueConfig>,
    /// How often an idle queue is polled when no notification arrives. Default `"1s"`.
    pub poll_interval: Duration,
    /// How long a claimed job's lease lasts without a heartbeat. Default `"30s"`.
    pub lease: Duration,
    /// On shutdown, how long running jobs may finish before they are released. Default `"30s"`.
    pub shutdown_timeout: Duration,
    /// Finished jobs older than this are deleted. Default `"1d"`.
    pub prune_after: Duration,
    /// Wake on `LISTEN`/`NOTIFY`. Set `false` behind PgBouncer in transaction mode, where LISTEN
    /// does not work: idle queues are then polled every `poll_interval`, and cancellations reach
    /// running jobs with the next lease renewal. Default `true`.
    pub listen: bool,
    /// Claim windows: a claim locks its jobs inside a transaction instead of writing them
    /// `running`, and a job whose attempt ends within `claim_window` is written once, with its
    /// outcome; the rest are written `running` (leased) when the window ends. Halves the row
    /// versions of short jobs (about 1.1× the drain rate, `forge-bench jobs`). Each window
    /// records its attempts in a row of `forge_claim_slots` before they start, so an attempt
    /// cut short by its node's death still counts. Default `true`; `false` claims the classic
    /// way (each job written `running`, then with its outcome).
    pub hold_claims: bool,
    /// How long a claim window stays open at most (see `hold_claims`). Less than half of
    /// `lease`. Default `"50ms"`: long enough for a window to see through a line of jobs
    /// claimed ahead when they take a few milliseconds (20 ms until 2026-12-06, when such jobs
    /// were mostly written twice).
    pub claim_window: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            queues: BTreeMap::from([("default".to_owned(), QueueConfig::default())]),
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            prune_after: Duration::from_secs(86_400),
            listen: true,
            hold_claims: true,
            claim_window: Duration::from_millis(50),
        }
    }
}

/// `[worker.queues.<name>]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct QueueConfig {
    /// Jobs of this queue running at once on this node. Default 100.
    #[serde(deserialize_with = "at_least_one_usize")]
    pub concurrency: NonZeroUsize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self { concurrency: NonZeroUsize::new(100).expect("100 is not zero") }
    }
}

/// `[observability]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ObservabilityConfig {
    /// A `tracing` filter for the process's own log output, such as `"info"` or
    /// `"info,forge_runtime=debug"`. `RUST_LOG` overrides it. Default `"info"`.
    pub log_level: String,
    /// How the process prints its logs: `"pretty"` or `"json"`. Default `"pretty"`.
    pub log_format: LogFormat,
    /// Whether the node stores its logs, spans and metrics in Postgres. Default `true`.
    pub enabled: bool,
    /// A `tracing` filter for what is stored in `forge_logs` and `forge_traces`, independent of
    /// `log_level`. Default `"info"`.
    pub store_level: String,
    /// How many spans of *plain* requests each node stores per second: requests that answered
    /// below 500, faster than `slow_request`, logged nothing that is stored, started no stored
    /// span (no job dispatched, no span of the application's) and did not arrive with a
    /// sampled W3C `traceparent`. Every other request's span is always stored, and every
    /// request is counted in the `forge_http_*` metrics. `"all"` stores every request's span.
    /// Default `100`.
    pub request_spans: RequestSpans,
    /// A request at least this slow always has its span stored. Default `"100ms"`.
    pub slow_request: Duration,
    /// How often buffered logs and spans are written. Default `"1s"`.
    pub flush_interval: Duration,
    /// How often metrics are sampled and written (one row per series per interval).
    /// Default `"10s"`.
    pub metrics_interval: Duration,
    /// Log records (and, separately, spans) held in memory while waiting to be written; when
    /// full, the oldest are dropped and counted. Default `10000`.
    pub buffer_size: NonZeroUsize,
    /// How long telemetry is kept in Postgres.
    pub retention: RetentionConfig,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        Self {
            log_level: "info".to_owned(),
            log_format: LogFormat::Pretty,
            enabled: true,
            store_level: "info".to_owned(),
            request_spans: RequestSpans::PerSecond(100),
            slow_request: Duration::from_millis(100),
            flush_interval: Duration::from_secs(1),
            metrics_interval: Duration::from_secs(10),
            buffer_size: NonZeroUsize::new(10_000).expect("10000 is not zero"),
            retention: RetentionConfig::default(),
        }
    }
}

/// `[observability] request_spans`: how many plain requests per second per node have their span
/// stored, or all of them. Written as a number (`100`) or `"all"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestSpans {
    /// Every request's span is stored.
    All,
    /// At most this many plain requests per second per node; the others' spans are counted, not
    /// stored.
    PerSecond(u32),
}

impl Serialize for RequestSpans {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::All => s.serialize_str("all"),
            Self::PerSecond(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for RequestSpans {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = RequestSpans;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of spans per second (0 to 4294967295) or \"all\"")
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RequestSpans, E> {
                u32::try_from(v)
                    .map(RequestSpans::PerSecond)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RequestSpans, E> {
                u32::try_from(v)
                    .map(RequestSpans::PerSecond)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RequestSpans, E> {
                if v == "all" {
                    Ok(RequestSpans::All)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }

        d.deserialize_any(Visitor)
    }
}

/// How a process prints its logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[observability.retention]`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RetentionConfig {
    /// Logs. Default `"7d"`.
    pub logs: Duration,
    /// Traces. Default `"3d"`.
    pub traces: Duration,
    /// Metrics. Default `"30d"`.
    pub metrics: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            logs: Duration::from_secs(7 * 86_400),
            traces: Duration::from_secs(3 * 86_400),
            metrics: Duration::from_secs(30 * 86_400),
        }
    }
}

/// `[auth]`.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthConfig {
    /// Secret for bearer JWTs; better set as `FORGE_AUTH_JWT_SECRET` than in the file. Unset:
    /// bearer JWTs are refused (API keys still work).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<String>,
    /// The one algorithm tokens may be signed with: `"HS256"` (default), `"HS384"` or
    /// `"HS512"`. Tokens with any other `alg`, `none` included, are refused.
    pub jwt_algorithm: JwtAlgorithm,
    /// Required `iss` claim, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_audience: Option<String>,
    /// Clock skew allowed when checking `exp` and `nbf`. Default `"30s"`.
    pub jwt_leeway: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_algorithm: JwtAlgorithm::default(),
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway: Duration::from_secs(30),
        }
    }
}

/// An HMAC algorithm for JWTs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[allow(clippy::upper_case_acronyms, reason = "the names JWTs use")]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256.
    #[default]
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<redacted>"))
            .field("jwt_algorithm", &self.jwt_algorithm)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_leeway", &self.jwt_leeway)
            .finish()
    }
}

fn at_least_one_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NonZeroU32, D::Error> {
    let n = i64::deserialize(deserializer)?;
    u32::try_from(n)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| de::Error::custom(format!("{n} is not allowed; use a whole number of at least 1")))
}

fn at_least_one_usize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<NonZeroUsize, D::Error> {
    let n = i64::deserialize(deserializer)?;
    usize::try_from(n)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| de::Error::custom(format!("{n} is not allowed; use a whole number of at least 1")))
}

fn queue_map<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, QueueConfig>, D::Error> {
    let queues = BTreeMap::<String, QueueConfig>::deserialize(deserializer)?;
    for name in queues.keys() {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(de::Error::custom(format!(
                "queue name {name:?} is not allowed; use 1 to 64 letters, digits, '_' or '-'"
            )));
        }
    }
    Ok(queues)
}

#[cfg(test)]
mod tests;
