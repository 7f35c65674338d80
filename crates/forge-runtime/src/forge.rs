//! [`Forge`]: one node of a Forge application, running the components its roles name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use forge_core::ForgeConfig;
use forge_core::config::{LogFormat, ObservabilityConfig, Role};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use std::time::Duration;

use crate::cluster::{
    ForceStop, LeaderDuties, LeaderSettings, Leadership, NodeInfo, NodeStatus, RegisteredNode, Shutdown, Signals,
};
use crate::cron::Crons;
use crate::dashboard::DashboardState;
use crate::db::{Database, Migrator};
use crate::error::{Error, Result};
use crate::gateway::{self, GatewayState};
use crate::jobs::maintenance::MaintenanceSettings;
use crate::jobs::worker::{Worker, WorkerSettings};
use crate::jobs::{
    self, BatchedDispatcher, CancelOutcome, Dispatcher, Job, JobId, JobRegistration, JobRegistry, JobsError, Notifier,
};
use crate::observability::{self, FlushSettings, StoreFilter, Telemetry, TelemetryLayer, Unentered};

/// Builds a [`Forge`] node.
#[derive(Debug, Default)]
pub struct ForgeBuilder {
    config: Option<ForgeConfig>,
    project_dir: Option<PathBuf>,
    listener: Option<std::net::TcpListener>,
    jobs: Vec<&'static JobRegistration>,
    without_crons: bool,
    extensions: axum::http::Extensions,
}

impl ForgeBuilder {
    /// The configuration. Without one, `forge.toml` in the project folder is read (all defaults
    /// if it does not exist), with environment overrides.
    pub fn config(mut self, config: ForgeConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// The folder relative paths in the configuration start from (`.forge/postgres`,
    /// `migrations/`). Default: the current folder.
    pub fn project_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.project_dir = Some(dir.into());
        self
    }

    /// Serves the gateway on an already bound listener instead of `gateway.host:gateway.port`
    /// (tests bind `127.0.0.1:0`).
    pub fn listener(mut self, listener: std::net::TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Registers a job kind implemented by hand (kinds declared with `#[forge::job]` register
    /// themselves).
    pub fn job<J: Job>(mut self) -> Self {
        self.jobs.push(Box::leak(Box::new(JobRegistration::of::<J>())));
        self
    }

    /// Hands `value` to every job this node runs: `ctx.extension::<T>()` (the application's
    /// shared state: an HTTP client, a configuration, a cache).
    pub fn extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(value);
        self
    }

    /// Whether this node schedules the binary's `#[forge::cron]`s when it leads (default: yes).
    /// A node that does not still runs cron jobs dispatched by a leader that does.
    pub fn crons(mut self, enabled: bool) -> Self {
        self.without_crons = !enabled;
        self
    }

    /// Checks the configuration, the crons' expressions and time zones, and reads the
    /// application's migrations. Nothing connects yet.
    pub fn build(self) -> Result<Forge> {
        let project_dir = match self.project_dir {
            Some(dir) => dir,
            None => std::env::current_dir().map_err(|e| Error::Setting {
                key: "project_dir",
                message: format!("cannot read the current folder: {e}"),
            })?,
        };
        let mut config = match self.config {
            Some(config) => config,
            None => ForgeConfig::load_or_default(project_dir.join("forge.toml"))?,
        };
        config.validate()?;
        if let Some(dir) = config.gateway.static_dir.take() {
            let dir = resolve(&project_dir, &dir);
            if !dir.is_dir() {
                return Err(Error::Setting {
                    key: "gateway.static_dir",
                    message: format!("{} is not a folder", dir.display()),
                });
            }
            config.gateway.static_dir = Some(dir);
        }
        // RUST_LOG, when set, replaces `log_level`: check it too.
        log_filter(&config.observability)?;
        let migrator = Migrator::with_app_dir(resolve(&project_dir, &config.database.migrations_dir))?
            .with_lock_timeout(config.database.migration_lock_timeout.as_std());
        let mut jobs = self.jobs;
        let mut extensions = self.extensions;
        if config.api.enabled {
            // The job API's webhook deliveries are jobs of this node too.
            static DELIVERIES: JobRegistration = JobRegistration::of::<crate::api::webhooks::DeliverWebhook>();
            jobs.push(&DELIVERIES);
            extensions.insert(crate::api::webhooks::WebhookSettings::new(&config.api.webhooks));
        }
        let registry = JobRegistry::collect(&jobs);
        let crons = if self.without_crons {
            Crons::default()
        } else {
            Crons::collect().map_err(|message| Error::Setting { key: "cron", message })?
        };
        Ok(Forge {
            config,
            project_dir,
            migrator,
            registry,
            crons,
            listener: self.listener,
            shutdown: Shutdown::new(),
            extensions: Arc::new(extensions),
        })
    }
}

/// One node of a Forge application.
///
/// ```no_run
/// use forge_runtime::{Forge, ForgeConfig};
///
/// # async fn run() -> Result<(), forge_runtime::Error> {
/// let config = ForgeConfig::load_or_default("forge.toml")?;
/// Forge::builder().config(config).build()?.run().await
/// # }
/// ```
#[derive(Debug)]
pub struct Forge {
    config: ForgeConfig,
    project_dir: PathBuf,
    migrator: Migrator,
    registry: JobRegistry,
    crons: Crons,
    listener: Option<std::net::TcpListener>,
    shutdown: Shutdown,
    extensions: jobs::Extensions,
}

impl Forge {
    /// A builder.
    pub fn builder() -> ForgeBuilder {
        ForgeBuilder::default()
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &ForgeConfig {
        &self.config
    }

    /// A handle that stops [`Forge::run`] as a signal would.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Installs logging, starts the node, and runs until SIGINT, SIGTERM or
    /// [`Shutdown::trigger`]; then stops every component, stops the embedded cluster if this
    /// process was its last user, and returns.
    pub async fn run(self) -> Result<()> {
        init_tracing(&self.config.observability)?;
        self.start().await?.run_until_signal().await
    }

    /// Connects to the database (starting the embedded cluster if there is no URL), applies
    /// pending migrations, and starts the components of the configured roles: telemetry, the
    /// gateway, the node's row and heartbeat, the worker, the campaign for leadership (whose
    /// term runs the leader's duties) and the telemetry flusher.
    pub async fn start(self) -> Result<RunningForge> {
        // Listen for signals before anything can report ready, so an early SIGTERM is handled.
        let signals = Signals::install().ok();
        let db = Database::connect(&self.config, &self.project_dir).await?;
        if let Err(e) = self.migrator.run(db.pool()).await {
            let _ = db.close().await;
            return Err(e.into());
        }
        let roles = &self.config.node.roles;
        let notifier = Notifier::spawn(db.pool().clone());
        // One per node: the gateway's actions, the worker's jobs and the handle dispatch through it.
        let batched = BatchedDispatcher::with_notifier(db.pool().clone(), notifier.clone());
        let node_id = node_id();
        let telemetry = self.start_telemetry(&node_id);
        let gateway = if roles.contains(Role::Gateway) {
            match self.start_gateway(&db, batched.clone(), telemetry.clone()).await {
                Ok(started) => Some(started),
                Err(e) => {
                    telemetry.detach();
                    let _ = db.close().await;
                    return Err(e);
                }
            }
        } else {
            None
        };
        let node = match self.register(&db, &node_id).await {
            Ok(node) => node,
            Err(e) => {
                telemetry.detach();
                let _ = db.close().await;
                return Err(e);
            }
        };
        let worker =
            roles.contains(Role::Worker).then(|| self.start_worker(&db, &notifier, &batched, &telemetry, &node_id));
        // Webhook deliveries are made where jobs run.
        let webhooks = (worker.is_some() && self.config.api.enabled).then(|| {
            let settings = crate::api::webhooks::WebhookSettings::new(&self.config.api.webhooks);
            tokio::spawn(crate::api::webhooks::dispatch::run(db.pool().clone(), settings, self.shutdown.token()))
        });
        let leadership = roles.contains(Role::Scheduler).then(|| self.start_leadership(&db, &notifier, &node_id));
        if let Some(worker) = &worker {
            let _ = telemetry.probes().worker.set(worker.slots_probe());
        }
        if let Some(leadership) = &leadership {
            let _ = telemetry.probes().leader.set(leadership.flag());
        }
        let flusher = self.start_flusher(&db, &telemetry);
        let serving = match &gateway {
            Some((addr, _)) if self.config.dashboard.enabled => {
                format!("serving http://{addr} (dashboard at http://{addr}/_dashboard)")
            }
            Some((addr, _)) => format!("serving http://{addr}"),
            None => "no gateway".to_owned(),
        };
        tracing::info!(
            node = %node_id,
            roles = %roles.iter().map(Role::as_str).collect::<Vec<_>>().join(","),
            jobs = self.registry.names().len(),
            crons = self.crons.names().len(),
            "forge node started: {serving}; {}",
            db.describe()
        );
        Ok(RunningForge {
            db,
            gateway,
            worker,
            webhooks,
            node: Some(node),
            leadership,
            batched,
            node_id,
            telemetry,
            flusher,
            signals,
            shutdown: self.shutdown,
        })
    }

    /// The node's telemetry; stored (the layer installed, the node attached) unless
    /// `[observability] enabled = false`.
    fn start_telemetry(&self, node_id: &str) -> Arc<Telemetry> {
        let obs = &self.config.observability;
        let telemetry = Telemetry::new(node_id.to_owned(), obs.buffer_size.get());
        telemetry.set_request_spans(obs.request_spans, obs.slow_request.as_std());
        if obs.enabled {
            install_telemetry_layer(obs);
            telemetry.attach();
        }
        // The `metrics` facade's values land in the node's metrics (unless the application
        // installed its own recorder).
        let _ = observability::ForgeRecorder::install();
        telemetry
    }

    /// The node's row in `forge_nodes`, heartbeating; and the job kinds it runs.
    async fn register(&self, db: &Database, node_id: &str) -> Result<RegisteredNode> {
        let info = NodeInfo {
            id: node_id.to_owned(),
            hostname: hostname(),
            pid: std::process::id(),
            roles: self.config.node.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            capabilities: self.config.node.capabilities.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let heartbeat = self.config.node.heartbeat_interval.as_std();
        let node = RegisteredNode::register(db.control_pool().clone(), &info, heartbeat).await.map_err(|source| {
            Error::Database(crate::db::DbError::Connect { target: db.target().to_owned(), source })
        })?;
        if let Err(e) = jobs::record_kinds(db.pool(), &self.registry, node_id).await {
            tracing::warn!(error = %e, "cannot record this node's job kinds");
        }
        if let Err(e) = crate::cron::record_crons(db.pool(), &self.crons, node_id).await {
            tracing::warn!(error = %e, "cannot record this node's crons");
        }
        Ok(node)
    }

    /// `[worker] queues`, and with the job API the webhook deliveries' queue.
    fn worker_queues(&self) -> Vec<(String, usize)> {
        let mut queues: Vec<(String, usize)> =
            self.config.worker.queues.iter().map(|(name, q)| (name.clone(), q.concurrency.get())).collect();
        let webhooks = crate::api::webhooks::QUEUE;
        if self.config.api.enabled && !queues.iter().any(|(name, _)| name == webhooks) {
            let concurrency = usize::try_from(self.config.api.webhooks.concurrency).unwrap_or(32).max(1);
            queues.push((webhooks.to_owned(), concurrency));
        }
        queues
    }

    fn start_worker(
        &self,
        db: &Database,
        notifier: &Notifier,
        batched: &BatchedDispatcher,
        telemetry: &Arc<Telemetry>,
        node_id: &str,
    ) -> Worker {
        let w = &self.config.worker;
        let settings = WorkerSettings {
            node_id: node_id.to_owned(),
            queues: self.worker_queues(),
            capabilities: self.config.node.capabilities.clone(),
            poll_interval: w.poll_interval.as_std(),
            lease: w.lease.as_std(),
            shutdown_timeout: w.shutdown_timeout.as_std(),
            listen: w.listen,
            claim_window: w.hold_claims.then(|| w.claim_window.as_std()),
            extensions: self.extensions.clone(),
        };
        Worker::spawn(
            db.pool().clone(),
            db.control_pool().clone(),
            self.registry.clone(),
            notifier.clone(),
            batched.clone(),
            telemetry.clone(),
            settings,
        )
    }

    fn start_leadership(&self, db: &Database, notifier: &Notifier, node_id: &str) -> Leadership {
        let (node, obs) = (&self.config.node, &self.config.observability);
        let heartbeat = node.heartbeat_interval.as_std();
        let duties = LeaderDuties {
            pool: db.control_pool().clone(),
            notifier: notifier.clone(),
            node_id: node_id.to_owned(),
            maintenance: MaintenanceSettings {
                lease: self.config.worker.lease.as_std(),
                prune_after: self.config.worker.prune_after.as_std(),
                grace: self.config.worker.lease.as_std() + heartbeat,
            },
            dead_after: node.dead_after.as_std(),
            sweep_every: heartbeat,
            crons: self.crons.clone(),
            retention: obs.enabled.then(|| obs.retention.clone()),
            event_retention: self.config.api.event_retention.as_std(),
        };
        let settings = LeaderSettings {
            campaign_every: heartbeat,
            renew_every: (heartbeat / 2).max(Duration::from_millis(50)),
            term: node.dead_after.as_std(),
        };
        Leadership::spawn(db.pool().clone(), node_id.to_owned(), settings, duties)
    }

    /// Writes buffered logs, spans and metrics to the database, when telemetry is stored.
    fn start_flusher(&self, db: &Database, telemetry: &Arc<Telemetry>) -> Option<(CancellationToken, JoinHandle<()>)> {
        let obs = &self.config.observability;
        obs.enabled.then(|| {
            let stop = CancellationToken::new();
            let settings = FlushSettings {
                flush_every: obs.flush_interval.as_std(),
                metrics_every: obs.metrics_interval.as_std(),
            };
            let handle = observability::spawn_flusher(telemetry.clone(), db.pool().clone(), settings, stop.clone());
            (stop, handle)
        })
    }

    async fn start_gateway(
        &self,
        db: &Database,
        batched: BatchedDispatcher,
        telemetry: Arc<Telemetry>,
    ) -> Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
        let gw = &self.config.gateway;
        let listener = match &self.listener {
            Some(listener) => {
                let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                let std = listener.try_clone().map_err(|source| Error::Listen { addr: addr.clone(), source })?;
                std.set_nonblocking(true).map_err(|source| Error::Listen { addr: addr.clone(), source })?;
                tokio::net::TcpListener::from_std(std).map_err(|source| Error::Listen { addr, source })?
            }
            None => {
                let addr = format!("{}:{}", gw.host, gw.port);
                tokio::net::TcpListener::bind(&addr).await.map_err(|source| Error::Listen { addr, source })?
            }
        };
        let addr = listener
            .local_addr()
            .map_err(|source| Error::Listen { addr: format!("{}:{}", gw.host, gw.port), source })?;
        let state = GatewayState::assemble(
            db.pool().clone(),
            db.read_pool().clone(),
            self.migrator.clone(),
            &self.config,
            Some(batched),
            telemetry,
        );
        let app = http_app(state, &self.config, self.registry.clone(), self.shutdown.token());
        let settings = gateway::ServeSettings {
            header_read_timeout: gw.header_read_timeout.as_std(),
            request_timeout: gw.request_timeout.as_std(),
            max_connections: gw.max_connections.get(),
        };
        let handle = tokio::spawn(gateway::serve(listener, app, settings, self.shutdown.token()));
        Ok((addr, handle))
    }
}

/// The node's HTTP app: the gateway's routes and, when enabled, the job API's (`[api]`), the
/// live queries' (`[realtime]`, on nodes that run functions, until `stop`) and the dashboard's
/// (running the kinds of `jobs`), under the gateway's layers.
pub(crate) fn http_app(
    gateway: GatewayState,
    config: &ForgeConfig,
    jobs: JobRegistry,
    stop: CancellationToken,
) -> axum::Router {
    let mut extra = axum::Router::new();
    let dashboard = config.dashboard.enabled.then(|| DashboardState::new(gateway.pool().clone(), config, jobs.clone()));
    if crate::realtime::served(config) {
        let mut realtime = crate::realtime::Realtime::new(gateway.clone(), config, stop);
        // The dashboard's pages follow their data over /ws.
        if let Some(dashboard) = &dashboard {
            realtime = realtime.with_sources(crate::dashboard::live_sources(dashboard));
        }
        extra = extra.merge(crate::realtime::router(realtime));
    }
    if config.api.enabled {
        let api = crate::api::ApiState::new(gateway.pool().clone(), config, jobs, gateway.notifier().cloned());
        extra = extra.merge(crate::api::router(api));
    }
    if let Some(dashboard) = dashboard {
        extra = extra.merge(crate::dashboard::router(dashboard));
    }
    gateway::router_with(gateway, extra)
}

/// A started node. Stop it with [`RunningForge::stop`].
#[derive(Debug)]
pub struct RunningForge {
    db: Database,
    gateway: Option<(SocketAddr, JoinHandle<std::io::Result<()>>)>,
    worker: Option<Worker>,
    /// The job API's webhook dispatcher.
    webhooks: Option<JoinHandle<()>>,
    node: Option<RegisteredNode>,
    leadership: Option<Leadership>,
    /// Dispatches through the node: single jobs share INSERTs; workers woken by its notifier.
    batched: BatchedDispatcher,
    node_id: String,
    telemetry: Arc<Telemetry>,
    flusher: Option<(CancellationToken, JoinHandle<()>)>,
    signals: Option<Signals>,
    shutdown: Shutdown,
}

impl RunningForge {
    /// Where the gateway listens, if this node has the gateway role.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.gateway.as_ref().map(|(addr, _)| *addr)
    }

    /// The node's connection pool.
    pub fn pool(&self) -> &PgPool {
        self.db.pool()
    }

    /// A handle that asks the node to stop.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Runs until SIGINT, SIGTERM or [`Shutdown::trigger`], then [`RunningForge::stop`]s. A
    /// second signal while it waits for running jobs releases them at once (another node runs
    /// them now); a third exits the process.
    pub async fn run_until_signal(mut self) -> Result<()> {
        let shutdown = self.shutdown_handle();
        let signals = match self.signals.take() {
            Some(signals) => signals,
            None => Signals::install().map_err(Error::Signal)?,
        };
        let force = tokio::select! {
            (signal, force) = signals.wait_then_force() => {
                tracing::info!(signal, "shutting down");
                Some(force)
            }
            () = shutdown.triggered() => {
                tracing::info!("shutting down");
                None
            }
        };
        self.stop_inner(force).await
    }

    /// Whether this node currently leads the cluster (holds the scheduler lock).
    pub fn is_leader(&self) -> bool {
        self.leadership.as_ref().is_some_and(Leadership::is_leader)
    }

    /// This node's id, as recorded in `forge_nodes` and `forge_jobs.attempted_by`.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The node's telemetry: its metrics and the buffers of logs and spans waiting to be
    /// written.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Writes the buffered logs and spans now (they are written every
    /// `[observability] flush_interval` anyway); returns how many were written.
    pub async fn flush_telemetry(&self) -> Result<usize, sqlx::Error> {
        self.telemetry.flush(self.db.pool()).await
    }

    /// Cancels a job: at once if it has not started, through its worker if it is running.
    pub async fn cancel_job(&self, id: JobId) -> Result<CancelOutcome, JobsError> {
        jobs::cancel(self.db.pool(), id).await
    }

    /// Makes a discarded or cancelled job available again.
    pub async fn retry_job(&self, id: JobId) -> Result<bool, JobsError> {
        jobs::retry(self.db.pool(), id).await
    }

    /// Stops the node: the worker stops claiming and drains (releasing what does not finish
    /// within `[worker] shutdown_timeout`), the gateway lets requests in flight finish, the pool
    /// closes and, if this process was its last user, the embedded cluster stops.
    pub async fn stop(self) -> Result<()> {
        self.stop_inner(None).await
    }

    /// [`RunningForge::stop`]; when `force` fires while the worker waits for its running jobs,
    /// they are released at once.
    pub async fn stop_forced_by(self, force: ForceStop) -> Result<()> {
        self.stop_inner(Some(force)).await
    }

    async fn stop_inner(mut self, force: Option<ForceStop>) -> Result<()> {
        if let Some(node) = &self.node {
            node.set_status(NodeStatus::Draining).await;
        }
        if let Some(worker) = self.worker.take() {
            worker.stop(force).await;
        }
        self.shutdown.trigger();
        if let Some(webhooks) = self.webhooks.take() {
            let _ = webhooks.await;
        }
        if let Some(leadership) = self.leadership.take() {
            leadership.stop().await;
        }
        let served = match self.gateway {
            Some((_, handle)) => match handle.await {
                Ok(result) => result.map_err(Error::Serve),
                Err(e) => Err(Error::Serve(std::io::Error::other(e.to_string()))),
            },
            None => Ok(()),
        };
        if let Some(node) = self.node.take() {
            node.stop().await;
        }
        tracing::info!("forge node stopped");
        // Last: everything buffered, this node's final lines included, is written.
        match self.flusher.take() {
            Some((stop, handle)) => {
                stop.cancel();
                let _ = handle.await;
            }
            None => self.telemetry.detach(),
        }
        let closed = self.db.close().await.map_err(Error::from);
        served.and(closed)
    }
}

/// Installs the process's `tracing` subscriber: lines on stderr (coloured only on a terminal
/// without `NO_COLOR`) filtered by `RUST_LOG` or else `observability.log_level`, and (unless `observability.enabled` is false) the
/// [`TelemetryLayer`] storing logs and spans at `observability.store_level` in Postgres. Does
/// nothing if the process already has a subscriber.
pub fn init_tracing(config: &ObservabilityConfig) -> Result<()> {
    let filter = log_filter(config)?;
    let store = store_filter(config)?;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colours_on_stderr());
    let fmt = match config.log_format {
        LogFormat::Pretty => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    // Neither layer does anything when a span is entered or left, unless a directive depends on
    // the spans an event is in (the only syntax with brackets).
    let fmt = Unentered::new(fmt.with_filter(filter), log_source(config).1.contains('['));
    let telemetry = config.enabled.then(|| TelemetryLayer::new().filtered(store));
    let _already_set = tracing_subscriber::registry().with(fmt).with(telemetry).try_init();
    Ok(())
}

/// Colours only for a person at a terminal: stderr is one, and `NO_COLOR` is unset or empty
/// (<https://no-color.org>).
fn colours_on_stderr() -> bool {
    use std::io::IsTerminal;
    colours(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref())
}

/// [`colours_on_stderr`]'s rule, given whether stderr is a terminal and `NO_COLOR`'s value.
fn colours(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Without a subscriber (a test, a program that did not call [`init_tracing`]), installs one
/// that only stores telemetry; with a subscriber lacking the [`TelemetryLayer`], says so once.
fn install_telemetry_layer(config: &ObservabilityConfig) {
    if !tracing::dispatcher::has_been_set()
        && let Ok(filter) = store_filter(config)
    {
        let _ = tracing_subscriber::registry().with(TelemetryLayer::new().filtered(filter)).try_init();
    }
    static WARNED: std::sync::Once = std::sync::Once::new();
    if !tracing::dispatcher::get_default(|d| d.is::<TelemetryLayer>()) {
        WARNED.call_once(|| {
            tracing::warn!(
                "the process's tracing subscriber has no forge TelemetryLayer: logs and spans are not stored"
            );
        });
    }
}

fn store_filter(config: &ObservabilityConfig) -> Result<StoreFilter> {
    StoreFilter::new(&config.store_level).map_err(|e| Error::Setting {
        key: "observability.store_level",
        message: format!("invalid filter {:?}: {e}", config.store_level),
    })
}

/// The directives of the printed lines' filter, and where they come from: `RUST_LOG` if set,
/// else `observability.log_level`.
fn log_source(config: &ObservabilityConfig) -> (&'static str, String) {
    match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => ("RUST_LOG", value),
        _ => ("observability.log_level", config.log_level.clone()),
    }
}

fn log_filter(config: &ObservabilityConfig) -> Result<EnvFilter> {
    let (key, directives) = log_source(config);
    EnvFilter::try_new(&directives)
        .map_err(|e| Error::Setting { key, message: format!("invalid log filter {directives:?}: {e}") })
}

impl Dispatcher for RunningForge {
    fn dispatch_pool(&self) -> &PgPool {
        self.db.pool()
    }

    fn dispatch_notifier(&self) -> Option<&Notifier> {
        self.batched.dispatch_notifier()
    }

    fn dispatch_batched(&self) -> Option<&BatchedDispatcher> {
        Some(&self.batched)
    }

    fn dispatch_span(&self) -> tracing::Span {
        tracing::info_span!("forge.dispatch", node_id = %self.node_id)
    }
}

/// `host-pid-xxxxxx`: unique per process, readable in `attempted_by`.
fn node_id() -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}-{}", hostname(), std::process::id(), &suffix[..6])
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned())
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_owned() } else { base.join(path) }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::colours;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours(true, None));
        assert!(colours(true, Some(OsStr::new(""))), "an empty NO_COLOR does not count");
        assert!(!colours(true, Some(OsStr::new("1"))), "NO_COLOR is honoured");
        assert!(!colours(false, None), "a file or a pipe gets plain text");
    }
}
