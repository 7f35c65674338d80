//! Functions clients call through the gateway: `#[forge::query]`, `#[forge::mutation]`.
//!
//! A function is an async fn taking a context and serde arguments and returning
//! `Result<T, ForgeError>`. The macros register it in the global [`FunctionRegistry`], keyed by
//! name, with its kind and argument/output type names (for the dashboard and client generators).
//!
//! - A **query** gets a [`QueryContext`]: the pool, for reads.
//! - A **mutation** gets a [`MutationContext`]: `ctx.tx()` is a transaction committed only if the
//!   function returns `Ok`, and jobs it dispatches with `ctx.dispatch` are inserted in that
//!   transaction, so a failed mutation leaves neither its writes nor its jobs.

mod context;
mod error;
mod registry;

pub use context::{MutationContext, QueryContext};
pub use error::{FieldError, ForgeError};
pub use registry::{CallParts, ErasedFunction, FunctionInfo, FunctionKind, FunctionRegistration, FunctionRegistry};
#[doc(hidden)]
pub use registry::{parse_args, run_mutation, run_query};
