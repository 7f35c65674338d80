//! [`DashboardState`]: what the dashboard's handlers share. The dashboard owns it; the gateway
//! knows nothing of it.

use std::sync::Arc;

use forge_core::ForgeConfig;
use forge_core::config::Mode;
use sqlx::PgPool;

use crate::api::webhooks::WebhookSettings;
use crate::cron::Crons;
use crate::functions::{FunctionInfo, FunctionRegistry};
use crate::gateway::{Authenticator, Connection};
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

    pub(crate) fn project(&self) -> &str {
        &self.inner.project
    }
}

/// Whether `request` comes from this machine and was meant for it: the peer and the address
/// it reached are loopback, its `Host` (and an absolute URI's authority) names a loopback host,
/// and no proxy header (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`) says it was relayed.
pub(crate) fn is_local_request(request: &axum::extract::Request) -> bool {
    use axum::extract::ConnectInfo;
    let Some(ConnectInfo(connection)) = request.extensions().get::<ConnectInfo<Connection>>() else {
        return false;
    };
    let loopback = |ip: std::net::IpAddr| ip.to_canonical().is_loopback();
    if !loopback(connection.peer.ip()) || !loopback(connection.local.ip()) {
        return false;
    }
    let headers = request.headers();
    let relayed = headers.keys().any(|name| {
        let name = name.as_str();
        name == "forwarded" || name == "x-real-ip" || name.starts_with("x-forwarded-")
    });
    if relayed {
        return false;
    }
    let host = headers.get(axum::http::header::HOST).and_then(|v| v.to_str().ok());
    host.is_some_and(is_loopback_host) && request.uri().authority().is_none_or(|a| is_loopback_host(a.as_str()))
}

/// Whether a `Host` value (`localhost:8080`, `127.0.0.1`, `[::1]:80`) names only this machine.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(name, _)| name),
        None => host
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for host in ["localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.1:80", "[::1]", "[::1]:8080"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["example.com", "localhost.evil.com", "10.0.0.1:80", "[::2]", "", "127.0.0.1.nip.io"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
