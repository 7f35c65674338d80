//! A fresh PostgreSQL database per test, with every migration applied.
//!
//! [`TestDatabase::new`] clones a template database that was migrated once per server and per
//! set of migrations, so a test pays for a `CREATE DATABASE … TEMPLATE …` (tens of
//! milliseconds), not for running migrations. Tests run in parallel, each in its own database;
//! a passing test's database is dropped when the [`TestDatabase`] is dropped, a failing test's
//! is kept and its name printed, so you can look inside.
//!
//! The server is `DATABASE_URL` (or `[database] url` in the project's `forge.toml`) when set,
//! and otherwise the project's embedded cluster, started on first use and stopped when the test
//! process exits (unless another process still uses it). The project folder is the nearest
//! ancestor of the current folder that holds a `forge.toml`; the application's own migrations
//! come from its `[database] migrations_dir`.
//!
//! For jobs: [`TestDatabase::assert_enqueued`] / [`TestDatabase::refute_enqueued`] look for
//! live jobs of a kind whose arguments contain a JSON subset; [`TestDatabase::perform_job`] runs
//! one attempt in-process through the worker's own executor and outcome policy; [`TestDatabase::drain_queue`] runs a queue to
//! empty with the real worker.
//!
//! For workflows: [`TestDatabase::start_workflow`] gives a [`TestRun`] that executes a run in
//! this process, with a clock moved forward by [`TestRun::advance`], events, simulated crashes
//! ([`TestRun::crash_after`]) and the recorded steps; [`MockHttp`] stands in for HTTP services.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use forge_runtime::testing::TestDatabase;
//!
//! let db = TestDatabase::new().await?;
//! let n: i64 = sqlx::query_scalar("select count(*) from forge_jobs").fetch_one(db.pool()).await?;
//! assert_eq!(n, 0);
//! # Ok(()) }
//! ```

mod database;
mod functions;
mod jobs;
#[cfg(test)]
mod pools;
mod workflows;

pub use database::{TestDatabase, project_root};
pub use functions::TestCaller;
pub use jobs::{DrainOptions, Drained};
#[cfg(test)]
pub(crate) use pools::{counted_pool, counted_pool_of, wait_for};
pub use workflows::{MockCall, MockHttp, MockRule, RunOutcome, TestRun};
