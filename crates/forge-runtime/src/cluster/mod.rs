//! How a node lives among others: its row and heartbeat in `forge_nodes`, leader election for
//! the scheduler role, the leader's sweep for dead nodes, and shutdown on SIGINT/SIGTERM.

mod leader;
mod node;
mod shutdown;
mod sql;

pub use leader::SCHEDULER_ROLE;
pub(crate) use leader::{Duties, LeaderSettings, Leadership, sweep_dead_nodes};
pub(crate) use node::RegisteredNode;
pub use node::{NodeInfo, NodeStatus};
pub use shutdown::{Shutdown, Signals, wait_for_signal};
