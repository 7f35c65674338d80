//! How a node lives in the cluster. For now: shutdown on SIGINT/SIGTERM. Node registration,
//! heartbeats and leader election join this folder with the scheduler.

mod shutdown;

pub use shutdown::{Shutdown, wait_for_signal};
