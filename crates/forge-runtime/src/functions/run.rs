//! The glue the function macros emit: parse the arguments, run the handler in its kind's
//! [`CallContext`], reply with JSON.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::CallContext;
use super::registry::parse_args;
use super::{CallParts, ForgeError};
use crate::jobs::BoxFuture;

/// Runs a handler of kind `C`: the glue `#[forge::query]`, `#[forge::mutation]` and
/// `#[forge::action]` emit.
#[doc(hidden)]
pub fn run_function<C, A, O, F, Fut>(
    parts: CallParts,
    args: serde_json::Value,
    f: F,
) -> BoxFuture<Result<serde_json::Value, ForgeError>>
where
    C: CallContext,
    A: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    F: FnOnce(C, A) -> Fut + Send + 'static,
    Fut: Future<Output = (C, Result<O, ForgeError>)> + Send + 'static,
{
    Box::pin(async move {
        let args: A = parse_args(args)?;
        let ctx = C::open(parts).await?;
        // The handler borrows the context and hands it back for `close` (no clone per call).
        let (ctx, out) = f(ctx, args).await;
        ctx.close(out.is_ok()).await?;
        serde_json::to_value(out?).map_err(|e| ForgeError::Internal(format!("cannot serialise the result: {e}")))
    })
}
