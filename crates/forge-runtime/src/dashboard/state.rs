//! [`DashboardState`]: what the dashboard's handlers share. The dashboard owns it; the gateway
//! knows nothing of it.

use std::sync::Arc;

use forge_core::ForgeConfig;
use forge_core::config::Mode;
use sqlx::PgPool;

use crate::api::webhooks::WebhookSettings;
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
    /// Whether `/_api` answers local requests without credentials (development mode and
    /// `[dashboard] open_on_loopback`).
    open_locally: bool,
    /// The role `/_api` requires otherwise.
    role: String,
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
    /// How webhook deliveries are made (resend and recover queue them).
    webhooks: WebhookSettings,
    /// Whether this node serves `/ws`, through which the live pages follow their data.
    live: bool,
}

impl DashboardState {
    /// The dashboard of a node configured by `config`, running the job kinds of `jobs`.
    pub(crate) fn new(pool: PgPool, config: &ForgeConfig, jobs: JobRegistry) -> Self {
        Self {
            inner: Arc::new(Inner {
                auth: Authenticator::new(&config.auth, pool.clone()),
                pool,
                open_locally: config.dashboard.open_on_loopback && config.project.mode == Mode::Development,
                role: config.dashboard.role.clone(),
                jobs,
                crons: Crons::collect().unwrap_or_default(),
                functions: FunctionRegistry::collect().list(),
                queues: config.worker.queues.iter().map(|(name, q)| (name.clone(), q.concurrency.get())).collect(),
                project: config.project.name.clone(),
                webhooks: WebhookSettings::new(&config.api.webhooks),
                live: crate::realtime::served(config),
            }),
        }
    }

    pub(crate) fn webhooks(&self) -> &WebhookSettings {
        &self.inner.webhooks
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub(crate) fn authenticator(&self) -> &Authenticator {
        &self.inner.auth
    }

    /// Whether `/_api` answers requests from this machine without credentials.
    pub(crate) fn opens_locally(&self) -> bool {
        self.inner.open_locally
    }

    /// The role `/_api` requires (`[dashboard] role`).
    pub(crate) fn role(&self) -> &str {
        &self.inner.role
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

    /// Whether this node serves `/ws` (the live pages' subscriptions).
    pub(crate) fn live(&self) -> bool {
        self.inner.live
    }

    pub(crate) fn project(&self) -> &str {
        &self.inner.project
    }
}
