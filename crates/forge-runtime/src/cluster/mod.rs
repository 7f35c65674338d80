//! How a node lives among others: its row and heartbeat in `forge_nodes`, leader election for
//! the scheduler role, the leader's sweep for dead nodes, and shutdown on SIGINT/SIGTERM.

mod duties;
mod housekeeping;
mod leader;
mod node;
mod shutdown;
mod sql;
mod sweep;

pub(crate) use duties::LeaderDuties;
pub use leader::SCHEDULER_ROLE;
pub(crate) use leader::{LeaderSettings, Leadership};
pub(crate) use node::RegisteredNode;
pub use node::{NodeInfo, NodeRecord, NodeStatus};
pub use shutdown::{ForceStop, Shutdown, Signals, wait_for_signal};

/// Every node that has registered, newest heartbeat first (at most 500), with whether it leads
/// and its load.
pub async fn nodes(pool: &sqlx::PgPool) -> Result<Vec<NodeRecord>, sqlx::Error> {
    sqlx::query_as(sql::NODES).fetch_all(pool).await
}
