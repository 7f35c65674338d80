//! The registry of functions, filled by the macros, and the one path every call takes:
//! authorise, rate-limit, serve from cache, run under the timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use serde::{Serialize, Serializer};
use tracing::Instrument;

use super::cache::QueryCache;
use super::rate_limit::RateLimit;
use super::schema::FunctionTypes;
use super::{Auth, CallParts, FieldError, ForgeError};
use crate::jobs::BoxFuture;
use crate::observability::{FUNCTION_SPAN, HTTP_SPAN};

/// What kind of function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionKind {
    /// Reads, on a read-only connection.
    Query,
    /// Writes, in a transaction committed only on success.
    Mutation,
    /// Talks to the outside world; may run mutations and dispatch jobs.
    Action,
}

impl FunctionKind {
    /// `"query"`, `"mutation"` or `"action"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FunctionKind::Query => "query",
            FunctionKind::Mutation => "mutation",
            FunctionKind::Action => "action",
        }
    }
}

/// Who may call a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "roles")]
pub enum Access {
    /// Anyone, with or without credentials (`public`).
    Public,
    /// Any caller with valid credentials: the default, and `require_auth`.
    Authenticated,
    /// A caller with at least one of these roles (`require_role("admin")`).
    AnyRole(&'static [&'static str]),
}

/// A function as clients and tools see it.
#[derive(Clone, Debug, Serialize)]
pub struct FunctionInfo {
    /// Its name: the JSON-RPC method and the `/rpc/{name}` path.
    pub name: &'static str,
    /// Query, mutation or action.
    pub kind: FunctionKind,
    /// The Rust type of its arguments.
    pub args_type: &'static str,
    /// The Rust type of its result.
    pub output_type: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Its rate limit, if any.
    pub rate_limit: Option<RateLimit>,
    /// How long a query's results are served from this node's cache, if at all.
    #[serde(rename = "cache_ms", serialize_with = "opt_millis")]
    pub cache: Option<Duration>,
    /// Longest run before the call fails with a timeout.
    #[serde(rename = "timeout_ms", serialize_with = "millis")]
    pub timeout: Duration,
    /// The tables a query reads (`reads = ["notes"]`): a live subscription to it is run again
    /// when one of them changes. `None`: undeclared, so any change to the application's tables
    /// runs it again.
    pub reads: Option<&'static [&'static str]>,
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn opt_millis<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => millis(d, s),
        None => s.serialize_none(),
    }
}

/// A handler with its types erased: JSON in, JSON out.
pub type ErasedFunction = fn(CallParts, serde_json::Value) -> BoxFuture<Result<serde_json::Value, ForgeError>>;

/// One function. `#[forge::query]`, `#[forge::mutation]` and `#[forge::action]` submit one.
#[derive(Debug)]
pub struct FunctionRegistration {
    /// Its description.
    pub info: fn() -> FunctionInfo,
    /// Its handler.
    pub handler: ErasedFunction,
    /// JSON Schemas of its argument and result types, and its doc comment (for `--describe`
    /// and `forge generate ts`).
    pub types: fn() -> FunctionTypes,
}

inventory::collect!(FunctionRegistration);

/// Every registered function, by name.
#[derive(Clone, Debug, Default)]
pub struct FunctionRegistry {
    functions: Arc<HashMap<&'static str, (FunctionInfo, ErasedFunction)>>,
    cache: QueryCache,
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
        Self { functions: Arc::new(functions), cache: QueryCache::default() }
    }

    /// The functions, sorted by name (for the dashboard and client generators).
    pub fn list(&self) -> Vec<FunctionInfo> {
        let mut list: Vec<FunctionInfo> = self.functions.values().map(|(info, _)| info.clone()).collect();
        list.sort_by_key(|i| i.name);
        list
    }

    /// One function's description.
    pub fn get(&self, name: &str) -> Option<&FunctionInfo> {
        self.functions.get(name).map(|(info, _)| info)
    }

    /// Calls `name` with `args` as `parts` says: checks the caller's access, takes a token from
    /// the function's rate limit, answers from the cache for a cached query, and otherwise runs
    /// the handler under the function's timeout.
    pub async fn call(
        &self,
        name: &str,
        parts: CallParts,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, ForgeError> {
        self.call_found(name, self.find(name), parts, args).await
    }

    /// [`FunctionRegistry::call`] of a function the caller has looked up already with
    /// [`FunctionRegistry::find`] (`found` is none if `name` is not registered), so that a
    /// caller that needs its description too finds it once.
    pub(crate) async fn call_found(
        &self,
        name: &str,
        found: Option<(&FunctionInfo, ErasedFunction)>,
        parts: CallParts,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, ForgeError> {
        let (info, handler) = found.ok_or_else(|| ForgeError::UnknownFunction(name.to_owned()))?;
        authorize(info, &parts.auth)?;
        if let Some(limit) = &info.rate_limit {
            // Boxed: most functions have no limit, and the call's future need not carry its room.
            Box::pin(super::rate_limit::take(&parts.pool, &limit.bucket(info.name, &parts), limit)).await?;
        }
        let cache_key = info.cache.map(|_| QueryCache::key(info.name, &parts.auth, &args));
        if let Some(key) = &cache_key
            && let Some(hit) = self.cache.get(key)
        {
            return Ok(hit);
        }
        let result = self.run(info, handler, parts, args).await;
        if let (Some(key), Some(ttl), Ok(value)) = (cache_key, info.cache, &result) {
            self.cache.put(key, value.clone(), ttl);
        }
        result
    }

    /// Runs query `name` again for a live subscription: the caller's access is checked again,
    /// but neither its rate limit (the caller asked once) nor the cache (the point is a fresh
    /// answer) is used.
    pub async fn rerun(
        &self,
        name: &str,
        parts: CallParts,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, ForgeError> {
        let (info, handler) = self.authorized(name, &parts.auth)?;
        self.run(info, handler, parts, args).await
    }

    /// Function `name`: its description and handler, if it is registered.
    pub(crate) fn find(&self, name: &str) -> Option<(&FunctionInfo, ErasedFunction)> {
        self.functions.get(name).map(|(info, handler)| (info, *handler))
    }

    /// Function `name` and its handler, if `auth` may call it.
    fn authorized(&self, name: &str, auth: &Auth) -> Result<(&FunctionInfo, ErasedFunction), ForgeError> {
        let (info, handler) = self.find(name).ok_or_else(|| ForgeError::UnknownFunction(name.to_owned()))?;
        authorize(info, auth)?;
        Ok((info, handler))
    }

    /// Runs `handler` under its timeout, a panic answered as an internal error. Called inside
    /// a request's `forge.http` span, it names the function on that span, which is then the
    /// call's span (one span per `/rpc` call: a second one inside it would tell nothing more
    /// and cost a span's creation and entering at every poll); elsewhere (a WebSocket call, a
    /// subscription's rerun) it runs in a `forge.function` span of its own.
    async fn run(
        &self,
        info: &FunctionInfo,
        handler: ErasedFunction,
        parts: CallParts,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, ForgeError> {
        let request = tracing::Span::current();
        let span = match request.metadata() {
            Some(meta) if meta.name() == HTTP_SPAN => {
                let fields = meta.fields();
                if let (Some(function), Some(kind)) = (fields.field("function"), fields.field("function_kind")) {
                    // One record of both fields: one visit of the span instead of two.
                    request.record_all(&fields.value_set(&[
                        (&function, Some(&info.name as &dyn tracing::Value)),
                        (&kind, Some(&info.kind.as_str() as &dyn tracing::Value)),
                    ]));
                }
                tracing::Span::none()
            }
            _ => tracing::info_span!(
                FUNCTION_SPAN,
                function = info.name,
                kind = info.kind.as_str(),
                request_id = %parts.request_id,
                trace_id = %parts.trace_id,
                status = tracing::field::Empty,
            ),
        };
        let timeout = info.timeout;
        // Inside an HTTP request whose own timeout comes first (the defaults: both 30 s), the
        // request's timer is enough: one timer-wheel entry per call instead of two.
        let timed = parts
            .request_deadline
            .is_none_or(|deadline| Instant::now().checked_add(timeout).is_some_and(|end| end < deadline));
        // A panic is caught and answered as an internal error; the node goes on serving.
        let run = std::panic::AssertUnwindSafe(handler(parts, args).instrument(span.clone())).catch_unwind();
        let outcome = if timed { tokio::time::timeout(timeout, run).await } else { Ok(run.await) };
        let result = match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => Err(ForgeError::Internal(format!(
                "{} panicked: {}",
                info.name,
                crate::jobs::worker::panic_message(panic)
            ))),
            Err(_) => Err(ForgeError::Timeout(timeout)),
        };
        if result.as_ref().is_err_and(|e| e.status().is_server_error()) {
            span.record("status", "error");
        }
        result
    }
}

/// Checks `auth` against the function's [`Access`].
fn authorize(info: &FunctionInfo, auth: &Auth) -> Result<(), ForgeError> {
    match info.access {
        Access::Public => Ok(()),
        _ if !auth.is_authenticated() => Err(ForgeError::Unauthorized),
        Access::Authenticated => Ok(()),
        Access::AnyRole(roles) if roles.iter().any(|r| auth.has_role(r)) => Ok(()),
        Access::AnyRole(roles) => Err(ForgeError::Forbidden(format!(
            "`{}` needs the role {}",
            info.name,
            roles.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>().join(" or ")
        ))),
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
