//! [`DashboardState`]: what the dashboard's handlers share. The dashboard owns it; the gateway
//! knows nothing of it.

use std::sync::Arc;

use forge_core::ForgeConfig;
use sqlx::PgPool;

use crate::cron::Crons;
use crate::functions::{FunctionInfo, FunctionRegistry};
use crate::gateway::Authenticator;
use crate::jobs::JobRegistry;

/// The dashboard's state. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct DashboardState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    auth: Authenticator,
    /// Whether `/_api` answers without credentials (a loopback-only development gateway).
    open: bool,
    /// The job kinds it can dispatch.
    jobs: JobRegistry,
    /// The crons it shows: every cron in the binary, also on a node that does not schedule them.
    crons: Crons,
    /// The functions it lists.
    functions: Vec<FunctionInfo>,
    /// This node's queues and their concurrency.
    queues: Vec<(String, usize)>,
    /// The application's name.
    project: String,
}

impl DashboardState {
    /// The dashboard of a node configured by `config`, running the job kinds of `jobs`.
    pub(crate) fn new(pool: PgPool, config: &ForgeConfig, jobs: JobRegistry) -> Self {
        Self {
            inner: Arc::new(Inner {
                auth: Authenticator::new(&config.auth, pool.clone()),
                pool,
                open: config.dashboard.open_on_loopback && is_loopback(&config.gateway.host),
                jobs,
                crons: Crons::collect().unwrap_or_default(),
                functions: FunctionRegistry::collect().list(),
                queues: config.worker.queues.iter().map(|(name, q)| (name.clone(), q.concurrency.get())).collect(),
                project: config.project.name.clone(),
            }),
        }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub(crate) fn authenticator(&self) -> &Authenticator {
        &self.inner.auth
    }

    /// Whether `/_api` answers without credentials.
    pub(crate) fn is_open(&self) -> bool {
        self.inner.open
    }

    pub(crate) fn jobs(&self) -> &JobRegistry {
        &self.inner.jobs
    }

    pub(crate) fn crons(&self) -> &Crons {
        &self.inner.crons
    }

    pub(crate) fn functions(&self) -> &[FunctionInfo] {
        &self.inner.functions
    }

    /// This node's queues and their concurrency.
    pub(crate) fn queue_config(&self) -> &[(String, usize)] {
        &self.inner.queues
    }

    pub(crate) fn project(&self) -> &str {
        &self.inner.project
    }
}

/// Whether `host` names only this machine (`localhost`, `127.0.0.0/8`, `::1`).
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.trim_matches(|c| c == '[' || c == ']').parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
