//! This node's row in `forge_nodes`, and its heartbeat.

use std::time::Duration;

use chrono::{DateTime, Utc};
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
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

impl std::str::FromStr for NodeStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [NodeStatus::Running, NodeStatus::Draining, NodeStatus::Stopped, NodeStatus::Dead]
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown node status {s:?}"))
    }
}

/// A node as operators see it (`forge status`, the dashboard): its row, whether it leads, and
/// its load.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct NodeRecord {
    /// Its id (`host-pid-xxxxxx`).
    pub id: String,
    /// The machine.
    pub hostname: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// Its capabilities.
    pub capabilities: Vec<String>,
    /// Forge's version on it.
    pub version: String,
    /// Where it is in its life.
    pub status: NodeStatus,
    /// When it registered.
    pub started_at: DateTime<Utc>,
    /// Its latest heartbeat.
    pub last_heartbeat: DateTime<Utc>,
    /// Seconds since that heartbeat.
    pub heartbeat_age_s: f64,
    /// Whether it holds the scheduler's lease.
    pub leader: bool,
    /// Jobs running on it.
    pub running_jobs: i64,
    /// Its process's CPU use, from the latest sample of the last five minutes.
    pub cpu_percent: Option<f64>,
    /// Its process's memory, from the latest sample of the last five minutes.
    pub memory_bytes: Option<f64>,
}

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for NodeRecord {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        let status: String = row.try_get("status")?;
        Ok(Self {
            id: row.try_get("id")?,
            hostname: row.try_get("hostname")?,
            roles: row.try_get("roles")?,
            capabilities: row.try_get("capabilities")?,
            version: row.try_get("version")?,
            status: status
                .parse()
                .map_err(|e: String| sqlx::Error::ColumnDecode { index: "status".to_owned(), source: e.into() })?,
            started_at: row.try_get("started_at")?,
            last_heartbeat: row.try_get("last_heartbeat")?,
            heartbeat_age_s: row.try_get("heartbeat_age_s")?,
            leader: row.try_get("leader")?,
            running_jobs: row.try_get("running_jobs")?,
            cpu_percent: row.try_get("cpu_percent")?,
            memory_bytes: row.try_get("memory_bytes")?,
        })
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
        let epoch: i64 = sqlx::query_scalar(sql::REGISTER)
            .bind(&info.id)
            .bind(&info.hostname)
            .bind(i32::try_from(info.pid).unwrap_or(i32::MAX))
            .bind(&info.roles)
            .bind(&info.capabilities)
            .bind(&info.version)
            .fetch_one(&pool)
            .await?;
        let stop = CancellationToken::new();
        let heartbeat = tokio::spawn(beat(
            pool.clone(),
            info.id.clone(),
            (every, epoch, crate::db::replace_connections_opened_before_now),
            stop.clone(),
        ));
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

/// Heartbeats every `every`. When the schema epoch has moved since `epoch` (a change that makes
/// statements prepared before it fail, such as `forge_jobs_use_domains()`), calls `moved`, which
/// for a node replaces the connections this process opened before, as they are next taken from
/// their pools.
async fn beat(pool: PgPool, id: String, (every, mut epoch, moved): (Duration, i64, fn()), stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        match sqlx::query_scalar::<_, i64>(sql::HEARTBEAT).bind(&id).fetch_optional(&pool).await {
            Ok(Some(now)) if now != epoch => {
                tracing::info!(epoch = now, "the schema changed: replacing connections opened before");
                moved();
                epoch = now;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "node heartbeat failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::testing::{TestDatabase, wait_for};

    /// A heartbeat that finds the schema epoch moved says so, once per move.
    #[tokio::test]
    async fn a_heartbeat_that_finds_the_schema_epoch_moved_calls_for_new_connections() {
        static MOVES: AtomicUsize = AtomicUsize::new(0);
        fn moved() {
            MOVES.fetch_add(1, Ordering::SeqCst);
        }
        let db = TestDatabase::new().await.expect("db");
        let epoch: i64 = sqlx::query_scalar(sql::REGISTER)
            .bind("n1")
            .bind("h")
            .bind(1)
            .bind(vec!["worker".to_owned()])
            .bind(Vec::<String>::new())
            .bind("0")
            .fetch_one(db.pool())
            .await
            .expect("register");
        let stop = CancellationToken::new();
        let every = Duration::from_millis(20);
        let task = tokio::spawn(beat(db.pool().clone(), "n1".to_owned(), (every, epoch, moved), stop.clone()));
        tokio::time::sleep(every * 5).await;
        assert_eq!(MOVES.load(Ordering::SeqCst), 0, "no move, no call");

        sqlx::query("select nextval('forge_schema_epoch')").execute(db.pool()).await.expect("move");
        wait_for("a call after the move", || MOVES.load(Ordering::SeqCst) == 1).await;
        tokio::time::sleep(every * 5).await;
        assert_eq!(MOVES.load(Ordering::SeqCst), 1, "once per move");
        sqlx::query("select nextval('forge_schema_epoch')").execute(db.pool()).await.expect("move again");
        wait_for("a call after the second move", || MOVES.load(Ordering::SeqCst) == 2).await;
        stop.cancel();
        task.await.expect("beat");
    }
}
