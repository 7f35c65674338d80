//! The registry of functions, filled by the macros.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;

use super::{ForgeError, MutationContext, QueryContext};
use crate::jobs::BoxFuture;

/// What kind of function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionKind {
    /// Reads.
    Query,
    /// Writes, in a transaction.
    Mutation,
}

/// A function as clients and tools see it.
#[derive(Clone, Debug, Serialize)]
pub struct FunctionInfo {
    /// Its name: the JSON-RPC method and the `/rpc/{name}` path.
    pub name: &'static str,
    /// Query or mutation.
    pub kind: FunctionKind,
    /// The Rust type of its arguments.
    pub args_type: &'static str,
    /// The Rust type of its result.
    pub output_type: &'static str,
    /// Longest run before the call fails with a timeout.
    #[serde(skip)]
    pub timeout: Duration,
}

/// What a handler gets from the gateway.
#[derive(Clone, Debug)]
pub struct CallParts {
    pub(crate) pool: PgPool,
    pub(crate) request_id: String,
}

/// A handler with its types erased: JSON in, JSON out.
pub type ErasedFunction = fn(CallParts, serde_json::Value) -> BoxFuture<Result<serde_json::Value, ForgeError>>;

/// One function. `#[forge::query]` and `#[forge::mutation]` submit one.
#[derive(Debug)]
pub struct FunctionRegistration {
    /// Its description.
    pub info: fn() -> FunctionInfo,
    /// Its handler.
    pub handler: ErasedFunction,
}

inventory::collect!(FunctionRegistration);

/// Every registered function, by name.
#[derive(Clone, Debug, Default)]
pub struct FunctionRegistry {
    functions: Arc<HashMap<&'static str, (FunctionInfo, ErasedFunction)>>,
}

impl FunctionRegistry {
    /// Every function in the binary.
    pub fn collect() -> Self {
        let functions = inventory::iter::<FunctionRegistration>
            .into_iter()
            .map(|r| {
                let info = (r.info)();
                (info.name, (info, r.handler))
            })
            .collect();
        Self { functions: Arc::new(functions) }
    }

    /// The functions, sorted by name (for the dashboard and client generators).
    pub fn list(&self) -> Vec<FunctionInfo> {
        let mut list: Vec<FunctionInfo> = self.functions.values().map(|(info, _)| info.clone()).collect();
        list.sort_by_key(|i| i.name);
        list
    }

    /// Calls `name` with `args`: `None` if there is no such function.
    pub(crate) async fn call(
        &self,
        name: &str,
        parts: CallParts,
        args: serde_json::Value,
    ) -> Option<Result<serde_json::Value, ForgeError>> {
        let (info, handler) = self.functions.get(name)?;
        let timeout = info.timeout;
        Some(match tokio::time::timeout(timeout, handler(parts, args)).await {
            Ok(result) => result,
            Err(_) => Err(ForgeError::Timeout(timeout)),
        })
    }
}

/// Deserialises arguments, naming the path of the first bad field.
#[doc(hidden)]
pub fn parse_args<T: serde::de::DeserializeOwned>(args: serde_json::Value) -> Result<T, ForgeError> {
    serde_path_to_error::deserialize(args).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let path = if path == "." { String::new() } else { path };
        ForgeError::InvalidArgs { message: message.clone(), errors: vec![FieldError { path, message }] }
    })
}

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
    A: serde::de::DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    F: FnOnce(QueryContext, A) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<O, ForgeError>> + Send + 'static,
{
    Box::pin(async move {
        let args: A = parse_args(args)?;
        reply(f(QueryContext::new(parts.pool, parts.request_id), args).await?)
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
    A: serde::de::DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    F: FnOnce(MutationContext, A) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<O, ForgeError>> + Send + 'static,
{
    Box::pin(async move {
        let args: A = parse_args(args)?;
        let tx = parts.pool.begin().await?;
        let ctx = MutationContext::new(tx, parts.request_id);
        let result = f(ctx.clone(), args).await;
        let tx = ctx.take().await;
        match result {
            Ok(out) => {
                if let Some(tx) = tx {
                    tx.commit().await?;
                }
                reply(out)
            }
            Err(e) => {
                if let Some(tx) = tx {
                    let _ = tx.rollback().await;
                }
                Err(e)
            }
        }
    })
}

use super::FieldError;
