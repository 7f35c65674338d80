//! Procedural macros for Forge. Applications do not depend on this crate directly: the macros
//! are re-exported by `forge` and emit paths into `::forge::…`.
#![warn(missing_docs)]

mod cron;
mod function;
mod job;

use proc_macro::TokenStream;

/// Declares a job kind from an async function
/// `async fn name(ctx: &JobContext, args: Args) -> Result<Output, JobError>`.
///
/// It generates a unit struct named after the function in PascalCase (`send_email` →
/// `SendEmail`) implementing `forge::jobs::Job`, and registers it so every node of the binary
/// can run it. Attributes, all optional:
///
/// | attribute | meaning |
/// |-----------|---------|
/// | `name = "email.send"` | the stored kind (default: the function's name) |
/// | `queue = "emails"` | the queue (default `"default"`) |
/// | `priority = high` | `critical`, `high`, `normal`, `low` or `background` |
/// | `max_attempts = 5` | attempts before discarding (default 20) |
/// | `backoff(exponential, base = "1s", max = "1h", jitter = 0.1)` | also `fixed` and `linear` |
/// | `timeout = "30s"` | longest attempt (default 5 minutes) |
/// | `worker_capability = "gpu"` | only nodes offering it run this kind |
/// | `unique`, `unique(key)`, `unique(args, period = "1h")` | at most one live (or per-period) job per args or key |
/// | `transactional` | `ctx.tx()` commits together with the job's completion |
#[proc_macro_attribute]
pub fn job(attr: TokenStream, item: TokenStream) -> TokenStream {
    job::expand(attr.into(), item.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Declares a cron from `async fn name(ctx: &CronContext) -> Result<(), JobError>`.
///
/// `#[forge::cron("*/5 * * * *")]` takes a 5-field expression (or 6, with seconds first), and:
///
/// | attribute | meaning |
/// |-----------|---------|
/// | `timezone = "Europe/Paris"` | IANA zone the expression is read in (default UTC) |
/// | `catch_up` | after a gap, fire the missed ticks (oldest first) |
/// | `catch_up_limit = 10` | at most this many missed ticks (default 10) |
/// | `overlap = "skip"` / `"allow"` | whether a tick fires while the previous run is live (default skip) |
/// | `name = "nightly"` | the cron's name (default: the function's) |
/// | `queue`, `max_attempts` (default 3), `timeout` | the options of the job each tick dispatches |
///
/// A bad expression or time zone is a compile error here, and an error at start-up for crons
/// registered by hand.
#[proc_macro_attribute]
pub fn cron(attr: TokenStream, item: TokenStream) -> TokenStream {
    cron::expand(attr.into(), item.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Declares a query: `async fn name(ctx: &QueryContext, args: Args) -> Result<T, ForgeError>`,
/// callable as `POST /rpc/name` and JSON-RPC method `name`. Attributes: `name = "..."`,
/// `timeout = "10s"` (default 30 s).
#[proc_macro_attribute]
pub fn query(attr: TokenStream, item: TokenStream) -> TokenStream {
    function::expand(function::Kind::Query, attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Declares a mutation: `async fn name(ctx: &MutationContext, args: Args) -> Result<T, ForgeError>`.
/// `ctx.tx()` and the jobs `ctx.dispatch` enqueues commit only if it returns `Ok`.
/// Attributes: `name = "..."`, `timeout = "10s"` (default 30 s).
#[proc_macro_attribute]
pub fn mutation(attr: TokenStream, item: TokenStream) -> TokenStream {
    function::expand(function::Kind::Mutation, attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
