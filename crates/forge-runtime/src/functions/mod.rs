//! Functions clients call through the gateway: `#[forge::query]`, `#[forge::mutation]` and
//! `#[forge::action]`.
//!
//! A function is an async fn taking a context and serde arguments and returning
//! `Result<T, ForgeError>`. The macros register it in the global [`FunctionRegistry`], keyed by
//! name, with its kind, argument and output type names, access rule, rate limit, cache and
//! timeout (for the dashboard and client generators).
//!
//! - A **query** gets a [`QueryContext`]: a read-only pool.
//! - A **mutation** gets a [`MutationContext`]: `ctx.tx()` is a transaction committed only if the
//!   function returns `Ok`, and jobs it dispatches with `ctx.dispatch` are inserted in that
//!   transaction, so a failed mutation leaves neither its writes nor its jobs.
//! - An **action** gets an [`ActionContext`]: an HTTP client with timeouts, the pool,
//!   `ctx.mutate(..)` to run a mutation, and job dispatch.
//!
//! Every call takes one path, [`FunctionRegistry::call`]: the caller's [`Auth`] is checked
//! against the function's [`Access`] (401 without credentials, 403 without the role), a token is
//! taken from its [`RateLimit`] bucket in Postgres (429), a cached query answers from the
//! node's cache, and otherwise the handler runs under the function's timeout (504).

mod auth;
mod cache;
mod context;
mod describe;
mod error;
pub(crate) mod rate_limit;
mod registry;
mod run;
mod schema;
mod sql;

pub use auth::{Auth, AuthMethod, ClientAuth};
pub(crate) use cache::QueryCache;
pub use context::{ActionContext, CallContext, CallParts, MutationContext, QueryContext};
pub use describe::{AppDescription, FunctionDescription, describe};
pub use error::{FieldError, ForgeError};
pub use rate_limit::{RateLimit, RateLimitKey};
#[doc(hidden)]
pub use registry::parse_args;
pub use registry::{Access, ErasedFunction, FunctionInfo, FunctionKind, FunctionRegistration, FunctionRegistry};
#[doc(hidden)]
pub use run::run_function;
pub use schema::FunctionTypes;
#[doc(hidden)]
pub use schema::{HasSchema, NoSchema, SchemaProbe};
