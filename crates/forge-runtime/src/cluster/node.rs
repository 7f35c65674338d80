//! This node's row in `forge_nodes`, and its heartbeat.

use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::sql;

/// What a node says about itself when it registers.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// Unique per process.
    pub id: String,
    /// The machine.
    pub hostname: String,
    /// The process.
    pub pid: u32,
    /// Its roles.
    pub roles: Vec<String>,
    /// Its capabilities.
    pub capabilities: Vec<String>,
    /// Forge's version.
    pub version: String,
}

/// A node's lifecycle status in `forge_nodes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStatus {
    /// Working.
    Running,
    /// Shutting down: no longer claiming, finishing its jobs.
    Draining,
    /// Gone, cleanly.
    Stopped,
    /// Declared dead by the leader after missing heartbeats.
    Dead,
}

impl NodeStatus {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Running => "running",
            NodeStatus::Draining => "draining",
            NodeStatus::Stopped => "stopped",
            NodeStatus::Dead => "dead",
        }
    }
}

/// The registered node: heartbeats until stopped.
#[derive(Debug)]
pub(crate) struct RegisteredNode {
    pool: PgPool,
    id: String,
    heartbeat: JoinHandle<()>,
    stop: CancellationToken,
}

impl RegisteredNode {
    pub(crate) async fn register(pool: PgPool, info: &NodeInfo, every: Duration) -> Result<Self, sqlx::Error> {
        sqlx::query(sql::REGISTER)
            .bind(&info.id)
            .bind(&info.hostname)
            .bind(i32::try_from(info.pid).unwrap_or(i32::MAX))
            .bind(&info.roles)
            .bind(&info.capabilities)
            .bind(&info.version)
            .execute(&pool)
            .await?;
        let stop = CancellationToken::new();
        let heartbeat = tokio::spawn(beat(pool.clone(), info.id.clone(), every, stop.clone()));
        Ok(Self { pool, id: info.id.clone(), heartbeat, stop })
    }

    pub(crate) async fn set_status(&self, status: NodeStatus) {
        if let Err(e) = sqlx::query(sql::SET_STATUS).bind(&self.id).bind(status.as_str()).execute(&self.pool).await {
            tracing::warn!(error = %e, status = status.as_str(), "could not record the node's status");
        }
    }

    /// Stops heartbeating and records the node as stopped.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        let _ = (&mut self.heartbeat).await;
        self.set_status(NodeStatus::Stopped).await;
    }
}

async fn beat(pool: PgPool, id: String, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        if let Err(e) = sqlx::query(sql::HEARTBEAT).bind(&id).execute(&pool).await {
            tracing::warn!(error = %e, "node heartbeat failed");
        }
    }
}
