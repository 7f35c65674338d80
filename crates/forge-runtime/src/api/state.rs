//! [`ApiState`]: what the `/v1` handlers share.

use std::collections::BTreeSet;
use std::sync::Arc;

use forge_core::ForgeConfig;
use sqlx::PgPool;

use super::batch::Submitter;
use super::error::ApiError;
use super::webhooks::WebhookSettings;
use crate::functions::{Auth, RateLimit, RateLimitKey};
use crate::gateway::{AuthError, Authenticator};
use crate::jobs::{JobRegistry, Notifier};

tokio::task_local! {
    /// The caller of the request this task serves, authenticated once by the middleware in
    /// front of the routes ([`limits`](super::limits)).
    pub(super) static CALLER: Auth;
}

/// What the `/v1` handlers share.
#[derive(Clone, Debug)]
pub struct ApiState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    auth: Authenticator,
    registry: JobRegistry,
    /// The kinds clients may submit.
    exposed: BTreeSet<String>,
    operator_role: String,
    idempotency_ttl: std::time::Duration,
    webhooks: WebhookSettings,
    /// Wakes idle workers after a submission commits (debounced; without it the insert itself
    /// notifies, and every submission's commit would queue behind Postgres's notify lock).
    notifier: Option<Notifier>,
    /// Each client's bucket; `None` when `[api.rate_limit] requests = 0`.
    rate_limit: Option<RateLimit>,
    /// Submits concurrent submissions in batches; started with the first.
    submitter: std::sync::OnceLock<Submitter>,
}

impl ApiState {
    /// State over `pool` for `config`, submitting the kinds of `registry` that are exposed
    /// (`#[forge::job(api)]` or `[api] kinds`), waking workers through the node's `notifier`.
    pub fn new(pool: PgPool, config: &ForgeConfig, registry: JobRegistry, notifier: Option<Notifier>) -> Self {
        let exposed = registry
            .names()
            .into_iter()
            .filter(|kind| registry.options(kind).is_some_and(|o| o.api) || config.api.kinds.iter().any(|k| k == kind))
            .map(str::to_owned)
            .collect::<BTreeSet<String>>();
        let limit = &config.api.rate_limit;
        let rate_limit = (limit.requests > 0).then(|| RateLimit {
            requests: limit.requests,
            per: limit.per.as_std(),
            key: RateLimitKey::ApiKey,
        });
        Self {
            inner: Arc::new(Inner {
                auth: Authenticator::new(&config.auth, pool.clone()),
                pool,
                registry,
                exposed,
                operator_role: config.api.operator_role.clone(),
                idempotency_ttl: config.api.idempotency_ttl.as_std(),
                webhooks: WebhookSettings::new(&config.api.webhooks),
                rate_limit,
                notifier,
                submitter: std::sync::OnceLock::new(),
            }),
        }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub(super) fn registry(&self) -> &JobRegistry {
        &self.inner.registry
    }

    /// Whether clients may submit `kind`.
    pub(super) fn is_exposed(&self, kind: &str) -> bool {
        self.inner.exposed.contains(kind)
    }

    /// The kinds clients may submit.
    pub fn exposed_kinds(&self) -> impl Iterator<Item = &str> {
        self.inner.exposed.iter().map(String::as_str)
    }

    pub(crate) fn webhooks(&self) -> &WebhookSettings {
        &self.inner.webhooks
    }

    /// Whether a submission's insert must notify itself (there is no node notifier to ask
    /// after the commit).
    pub(super) fn insert_notifies(&self) -> bool {
        self.inner.notifier.is_none()
    }

    /// Wakes the workers of `queue`, after a commit made work available there.
    pub(super) fn wake(&self, queue: &str) {
        if let Some(notifier) = &self.inner.notifier {
            notifier.notify(queue);
        }
    }

    /// Each client's token bucket, unless the limit is off.
    pub(super) fn rate_limit(&self) -> Option<&RateLimit> {
        self.inner.rate_limit.as_ref()
    }

    /// The batching submitter, started on first use (inside the runtime).
    pub(super) fn submitter(&self) -> &Submitter {
        self.inner
            .submitter
            .get_or_init(|| Submitter::start(self.inner.pool.clone(), self.idempotency_ttl().as_secs_f64()))
    }

    pub(super) fn idempotency_ttl(&self) -> std::time::Duration {
        self.inner.idempotency_ttl
    }

    /// The caller, or 401 (503 when credentials cannot be checked): the one the request's
    /// middleware ([`limits`](super::limits)) authenticated, or, outside it, from `headers`.
    pub(super) async fn caller(&self, headers: &axum::http::HeaderMap) -> Result<Auth, ApiError> {
        if let Ok(auth) = CALLER.try_with(Clone::clone) {
            return Ok(auth);
        }
        self.authenticate(headers).await
    }

    /// Authenticates `headers`: 401 without credentials that hold.
    pub(super) async fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<Auth, ApiError> {
        match self.inner.auth.authenticate(headers).await {
            Ok(auth) if auth.is_authenticated() => Ok(auth),
            Ok(_) => Err(ApiError::Unauthorized(
                "/v1 needs credentials: `Authorization: Bearer <API key>` or `X-Api-Key`".to_owned(),
            )),
            Err(AuthError::Unavailable(reason)) => {
                tracing::error!(error = %reason, "/v1: credentials could not be checked");
                Err(ApiError::Unavailable)
            }
            Err(e) => Err(ApiError::Unauthorized(e.to_string())),
        }
    }

    /// The caller as a client with `scope`: its id. 403 for a caller that is not a client or
    /// whose key lacks the scope.
    pub(crate) async fn client(&self, headers: &axum::http::HeaderMap, scope: &str) -> Result<uuid::Uuid, ApiError> {
        let auth = self.caller(headers).await?;
        let Some(client) = auth.client() else {
            return Err(ApiError::Forbidden(
                "this route is for job API clients: use a key created for a client".to_owned(),
            ));
        };
        if !client.scopes.is_empty() && !client.scopes.iter().any(|s| s == scope) {
            return Err(ApiError::Forbidden(format!("this key lacks the `{scope}` scope")));
        }
        Ok(client.id)
    }

    /// The caller as an operator: a stable name for them (the idempotency keys' owner). 403
    /// without `[api] operator_role`.
    pub(super) async fn operator(&self, headers: &axum::http::HeaderMap) -> Result<String, ApiError> {
        let auth = self.caller(headers).await?;
        let role = &self.inner.operator_role;
        if !auth.has_role(role) {
            return Err(ApiError::Forbidden(format!("managing clients needs the `{role}` role")));
        }
        Ok(format!("operator:{}", auth.subject().unwrap_or_default()))
    }
}
