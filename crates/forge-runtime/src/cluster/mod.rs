//! How a node lives among others: its row and heartbeat in `forge_nodes`, leader election for
//! the scheduler role, the leader's sweep for dead nodes, and shutdown on SIGINT/SIGTERM.

mod duties;
mod leader;
mod node;
mod shutdown;
mod sql;

pub(crate) use duties::LeaderDuties;
pub use leader::SCHEDULER_ROLE;
pub(crate) use leader::{LeaderSettings, Leadership};
pub(crate) use node::RegisteredNode;
pub use node::{NodeInfo, NodeStatus};
pub use shutdown::{Shutdown, Signals, wait_for_signal};

/// Every node that has registered (newest heartbeat first, at most 500), each as JSON: `id`,
/// `hostname`, `roles`, `capabilities`, `version`, `status`, `started_at`, `last_heartbeat`,
/// `heartbeat_age_s`, `leader` (whether it holds the scheduler's lease), and its load:
/// `running_jobs`, `cpu_percent` and `memory_bytes` (the latest samples, or null).
pub async fn nodes(pool: &sqlx::PgPool) -> Result<Vec<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar(&format!("select to_jsonb(n) from ({}) n", sql::NODES)).fetch_all(pool).await
}
