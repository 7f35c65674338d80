//! Procedural macros for Forge. Applications do not depend on this crate directly: the macros
//! are re-exported by `forge` and emit paths into `::forge::…`.
#![warn(missing_docs)]

mod cron;
mod function;
mod job;
mod workflow;

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
/// | `api` | outside clients may submit it through the job API (`POST /v1/jobs`) |
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
/// callable as `POST /rpc/name` and JSON-RPC method `name`. `ctx.db()` is a read-only pool.
///
/// | attribute | meaning |
/// |-----------|---------|
/// | `name = "notes.list"` | the name callers use (default: the function's) |
/// | `public` | anyone may call it, without credentials |
/// | `require_auth` | any authenticated caller (the default when no access is named) |
/// | `require_role("admin")`, `require_role("admin", "ops")` | a caller with one of these roles |
/// | `timeout = 10` or `timeout = "500ms"` | longest run before 504 (default 30 s) |
/// | `rate_limit(requests = 10, per = "1m", key = "user")` | token bucket per `user`, `api_key`, `ip` or `global` |
/// | `cache = "30s"` | serve the same caller's same arguments from this node's cache |
#[proc_macro_attribute]
pub fn query(attr: TokenStream, item: TokenStream) -> TokenStream {
    function::expand(function::Kind::Query, attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Declares a mutation: `async fn name(ctx: &MutationContext, args: Args) -> Result<T, ForgeError>`.
/// `ctx.tx()` and the jobs `ctx.dispatch` enqueues commit only if it returns `Ok`.
/// Attributes: as for [`macro@query`], without `cache`.
#[proc_macro_attribute]
pub fn mutation(attr: TokenStream, item: TokenStream) -> TokenStream {
    function::expand(function::Kind::Mutation, attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Declares an action: `async fn name(ctx: &ActionContext, args: Args) -> Result<T, ForgeError>`.
/// `ctx.http()` is an HTTP client with timeouts; `ctx.mutate(..)` runs a mutation and
/// `Job::dispatch(ctx, ..)` enqueues a job. Attributes: as for [`macro@query`], without `cache`.
#[proc_macro_attribute]
pub fn action(attr: TokenStream, item: TokenStream) -> TokenStream {
    function::expand(function::Kind::Action, attr.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Declares a durable workflow from
/// `async fn name(ctx: &WorkflowContext, args: Args) -> Result<Output, WorkflowError>`.
///
/// It generates a unit struct named after the function (`sign_up` → `SignUp`) implementing
/// `forge::workflows::Workflow` and `forge::jobs::Job` (a run is a job of the workflow's kind),
/// registered like a job. Start a run with `SignUp::start(&node, args)`. Attributes, all optional:
///
/// | attribute | meaning |
/// |-----------|---------|
/// | `name = "billing.sign_up"` | the stored kind (default: the function's name) |
/// | `version = 2` | the code's version, recorded on each run (default 1) |
/// | `queue = "workflows"` | the queue its executions run on (default `"default"`) |
/// | `priority = high` | as for jobs |
/// | `timeout = "7d"` | the longest a whole run may take; past it the run fails and compensates |
/// | `execution_timeout = "5m"` | the longest one execution may take (default 5 minutes) |
/// | `max_attempts = 20` | executions that may fail (a crash, a database error) before the run is discarded |
/// | `worker_capability = "gpu"` | only nodes offering it run this workflow |
#[proc_macro_attribute]
pub fn workflow(attr: TokenStream, item: TokenStream) -> TokenStream {
    workflow::expand(attr.into(), item.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}
