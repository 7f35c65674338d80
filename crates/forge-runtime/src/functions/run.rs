//! The glue the function macros emit: parse the arguments, build the context, run, reply.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::registry::parse_args;
use super::{ActionContext, CallParts, ForgeError, MutationContext, QueryContext};
use crate::jobs::BoxFuture;

/// A function's result as the reply's JSON.
fn reply<O: Serialize>(out: O) -> Result<serde_json::Value, ForgeError> {
    serde_json::to_value(out).map_err(|e| ForgeError::Internal(format!("cannot serialise the result: {e}")))
}

/// Runs a query handler: the glue `#[forge::query]` emits.
#[doc(hidden)]
pub fn run_query<A, O, F, Fut>(
    parts: CallParts,
    args: serde_json::Value,
    f: F,
) -> BoxFuture<Result<serde_json::Value, ForgeError>>
where
    A: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    F: FnOnce(QueryContext, A) -> Fut + Send + 'static,
    Fut: Future<Output = Result<O, ForgeError>> + Send + 'static,
{
    Box::pin(async move {
        let args: A = parse_args(args)?;
        reply(f(QueryContext::new(parts), args).await?)
    })
}

/// Runs a mutation handler in a transaction committed only on success: the glue
/// `#[forge::mutation]` emits.
#[doc(hidden)]
pub fn run_mutation<A, O, F, Fut>(
    parts: CallParts,
    args: serde_json::Value,
    f: F,
) -> BoxFuture<Result<serde_json::Value, ForgeError>>
where
    A: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    F: FnOnce(MutationContext, A) -> Fut + Send + 'static,
    Fut: Future<Output = Result<O, ForgeError>> + Send + 'static,
{
    Box::pin(async move {
        let args: A = parse_args(args)?;
        reply(MutationContext::run(parts, |ctx| f(ctx, args)).await?)
    })
}

/// Runs an action handler: the glue `#[forge::action]` emits.
#[doc(hidden)]
pub fn run_action<A, O, F, Fut>(
    parts: CallParts,
    args: serde_json::Value,
    f: F,
) -> BoxFuture<Result<serde_json::Value, ForgeError>>
where
    A: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    F: FnOnce(ActionContext, A) -> Fut + Send + 'static,
    Fut: Future<Output = Result<O, ForgeError>> + Send + 'static,
{
    Box::pin(async move {
        let args: A = parse_args(args)?;
        reply(f(ActionContext::new(parts), args).await?)
    })
}
