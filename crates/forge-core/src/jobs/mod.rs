//! The job engine's pure parts: states and the transitions between them, priorities, backoff,
//! per-kind options and the outcomes a job handler can return. The runtime's SQL follows these;
//! nothing here touches a database.
//!
//! ## Lifecycle
//!
//! ```text
//!   scheduled ──► available ──► running ──► completed
//!       ▲            ▲  ▲          │ │ │
//!       │  snoozed   │  └─released─┘ │ └──► discarded (attempts exhausted, permanent error)
//!       └────────────┼─────────────  │
//!                    └── retryable ◄─┘ (failed, attempts left; run_at = now + backoff)
//!   any non-final state ──► cancelled
//!   discarded, cancelled ──► available (an operator's retry)
//! ```
//!
//! [`JobState::can_transition`] is the whole table; the runtime checks every statement it
//! issues against it (see `forge_runtime::jobs`), and property tests check the table itself.

mod backoff;
mod error;
mod id;
mod options;
mod record;
mod state;

pub use backoff::{Backoff, BackoffKind};
pub use error::{JobError, error_chain};
pub use id::JobId;
pub use options::{JobOptions, Priority, Unique, UniqueBy};
pub use record::{AttemptError, FailureKind, JobProgress, JobRecord};
pub use state::{InvalidTransition, JobState};
