//! Procedural macros for Forge. Applications do not depend on this crate directly: the macros
//! are re-exported by `forge` and emit paths into `::forge::…`.
//!
//! The job, cron and function macros arrive with the components they register (the job engine,
//! the cluster scheduler and the gateway); this crate is part of the workspace from the start so
//! that the dependency graph (`forge` → `forge-runtime` → `forge-core`, `forge-macros` → `forge`
//! paths) is fixed before anything is built on it.
#![warn(missing_docs)]
