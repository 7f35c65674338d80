//! [`Forge`]: one node of a Forge application, running the components its roles name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use forge_core::ForgeConfig;
use forge_core::config::{LogFormat, ObservabilityConfig, Role};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tracing_subscriber::EnvFilter;

use crate::cluster::{Shutdown, wait_for_signal};
use crate::db::{Database, Migrator};
use crate::error::{Error, Result};
use crate::gateway::{self, GatewayState};

/// Builds a [`Forge`] node.
#[derive(Debug, Default)]
pub struct ForgeBuilder {
    config: Option<ForgeConfig>,
    project_dir: Option<PathBuf>,
    listener: Option<std::net::TcpListener>,
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

    /// Checks the configuration and reads the application's migrations. Nothing connects yet.
    pub fn build(self) -> Result<Forge> {
        let project_dir = match self.project_dir {
            Some(dir) => dir,
            None => std::env::current_dir().map_err(|e| Error::Setting {
                key: "project_dir",
                message: format!("cannot read the current folder: {e}"),
            })?,
        };
        let config = match self.config {
            Some(config) => config,
            None => ForgeConfig::load_or_default(project_dir.join("forge.toml"))?,
        };
        log_filter(&config.observability)?;
        let migrator =
            Migrator::with_app_dir(resolve(&project_dir, &config.database.migrations_dir))?;
        Ok(Forge {
            config,
            project_dir,
            migrator,
            listener: self.listener,
            shutdown: Shutdown::new(),
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
    listener: Option<std::net::TcpListener>,
    shutdown: Shutdown,
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
        let node = self.start().await?;
        let shutdown = node.shutdown_handle();
        tokio::select! {
            signal = wait_for_signal() => {
                let signal = signal.map_err(Error::Signal)?;
                tracing::info!(signal, "shutting down");
            }
            () = shutdown.triggered() => tracing::info!("shutting down"),
        }
        node.stop().await
    }

    /// Connects to the database (starting the embedded cluster if there is no URL), applies
    /// pending migrations, and starts the components of the configured roles.
    pub async fn start(self) -> Result<RunningForge> {
        let db = Database::connect(&self.config, &self.project_dir).await?;
        if let Err(e) = self.migrator.run(db.pool()).await {
            let _ = db.close().await;
            return Err(e.into());
        }
        let roles: Vec<&str> = self.config.node.roles.iter().map(Role::as_str).collect();
        let mut gateway = None;
        if self.config.node.roles.contains(Role::Gateway) {
            match self.start_gateway(db.pool().clone()).await {
                Ok(started) => gateway = Some(started),
                Err(e) => {
                    let _ = db.close().await;
                    return Err(e);
                }
            }
        }
        tracing::info!(
            roles = %roles.join(","),
            database = %db.target(),
            embedded = db.is_embedded(),
            gateway = ?gateway.as_ref().map(|(addr, _)| addr),
            "forge node started"
        );
        Ok(RunningForge {
            db,
            gateway,
            shutdown: self.shutdown,
        })
    }

    async fn start_gateway(
        &self,
        pool: PgPool,
    ) -> Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
        let gw = &self.config.gateway;
        let listener = match &self.listener {
            Some(listener) => {
                let addr = listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let std = listener.try_clone().map_err(|source| Error::Listen {
                    addr: addr.clone(),
                    source,
                })?;
                std.set_nonblocking(true).map_err(|source| Error::Listen {
                    addr: addr.clone(),
                    source,
                })?;
                tokio::net::TcpListener::from_std(std)
                    .map_err(|source| Error::Listen { addr, source })?
            }
            None => {
                let addr = format!("{}:{}", gw.host, gw.port);
                tokio::net::TcpListener::bind(&addr)
                    .await
                    .map_err(|source| Error::Listen { addr, source })?
            }
        };
        let addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: format!("{}:{}", gw.host, gw.port),
            source,
        })?;
        let body_limit = usize::try_from(gw.body_limit.bytes()).unwrap_or(usize::MAX);
        let state = GatewayState::new(pool, self.migrator.clone());
        let app = gateway::router(state, body_limit, gw.request_timeout.as_std());
        let token = self.shutdown.token();
        let handle = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
        });
        Ok((addr, handle))
    }
}

/// A started node. Stop it with [`RunningForge::stop`].
#[derive(Debug)]
pub struct RunningForge {
    db: Database,
    gateway: Option<(SocketAddr, JoinHandle<std::io::Result<()>>)>,
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

    /// Stops the gateway (letting requests in flight finish), closes the pool and, if this
    /// process was its last user, stops the embedded cluster.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.trigger();
        let served = match self.gateway {
            Some((_, handle)) => match handle.await {
                Ok(result) => result.map_err(Error::Serve),
                Err(e) => Err(Error::Serve(std::io::Error::other(e.to_string()))),
            },
            None => Ok(()),
        };
        let closed = self.db.close().await.map_err(Error::from);
        tracing::info!("forge node stopped");
        served.and(closed)
    }
}

/// Installs a `tracing` subscriber printing to stderr, filtered by `RUST_LOG` or else
/// `observability.log_level`. Does nothing if the process already has one.
pub fn init_tracing(config: &ObservabilityConfig) -> Result<()> {
    let filter = log_filter(config)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _already_set = match config.log_format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}

fn log_filter(config: &ObservabilityConfig) -> Result<EnvFilter> {
    let (key, directives) = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => ("RUST_LOG", value),
        _ => ("observability.log_level", config.log_level.clone()),
    };
    EnvFilter::try_new(&directives).map_err(|e| Error::Setting {
        key,
        message: format!("invalid log filter {directives:?}: {e}"),
    })
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}
