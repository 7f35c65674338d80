//! Calling functions in tests: as anyone, without HTTP ([`TestDatabase::call`]), or through the
//! gateway's router in-process ([`TestDatabase::router`]).

use std::net::IpAddr;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{TestDatabase, project_root};
use crate::db::{Migrator, read_only_pool};
use crate::error::Result;
use crate::functions::{Auth, CallParts, ForgeError, FunctionRegistry};
use crate::gateway::{Connection, GatewayState};
use crate::jobs::JobRegistry;

/// Who a test call comes from.
///
/// ```
/// use forge_runtime::testing::TestCaller;
///
/// let admin = TestCaller::user("u-1").with_role("admin").with_tenant("acme");
/// assert!(admin.auth().has_role("admin"));
/// assert!(!TestCaller::anonymous().auth().is_authenticated());
/// ```
#[derive(Clone, Debug, Default)]
pub struct TestCaller {
    auth: Auth,
    ip: Option<IpAddr>,
}

impl TestCaller {
    /// No credentials.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// A user, as a valid JWT with `sub = id` would make them.
    pub fn user(id: impl Into<String>) -> Self {
        Self { auth: Auth::user(id), ip: None }
    }

    /// An API key named `name` (with a random id).
    pub fn api_key(name: impl Into<String>) -> Self {
        Self { auth: Auth::api_key(uuid::Uuid::new_v4(), name), ip: None }
    }

    /// Adds a role.
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.auth = self.auth.with_role(role);
        self
    }

    /// Sets the tenant.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.auth = self.auth.with_tenant(tenant);
        self
    }

    /// Sets the token's claims.
    pub fn with_claims(mut self, claims: serde_json::Value) -> Self {
        self.auth = self.auth.with_claims(claims);
        self
    }

    /// Sets the client's IP address (for rate limits keyed by IP).
    pub fn with_ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// The caller as functions see it.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }
}

/// The binary's functions, collected once per test process (so cached queries stay cached).
fn registry() -> &'static FunctionRegistry {
    static REGISTRY: OnceLock<FunctionRegistry> = OnceLock::new();
    REGISTRY.get_or_init(FunctionRegistry::collect)
}

impl TestDatabase {
    /// Calls the query, mutation or action `function` with `args` as `caller`, through the same
    /// checks the gateway makes (access, rate limit, cache, timeout), without HTTP.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use forge_runtime::testing::{TestCaller, TestDatabase};
    ///
    /// let db = TestDatabase::new().await?;
    /// let sum: i64 = db.call("add", serde_json::json!({"a": 1, "b": 2}), &TestCaller::user("u1")).await?;
    /// assert_eq!(sum, 3);
    /// # Ok(()) }
    /// ```
    pub async fn call<O: DeserializeOwned>(
        &self,
        function: &str,
        args: impl Serialize,
        caller: &TestCaller,
    ) -> std::result::Result<O, ForgeError> {
        let value = self.call_json(function, args, caller).await?;
        serde_json::from_value(value)
            .map_err(|e| ForgeError::Internal(format!("the result of {function} does not fit the asked type: {e}")))
    }

    /// [`TestDatabase::call`], answering raw JSON.
    pub async fn call_json(
        &self,
        function: &str,
        args: impl Serialize,
        caller: &TestCaller,
    ) -> std::result::Result<serde_json::Value, ForgeError> {
        let args = serde_json::to_value(args).map_err(|e| ForgeError::Internal(format!("bad test arguments: {e}")))?;
        let parts = CallParts::reading_through(self.pool().clone(), self.read_db().clone())
            .with_auth(caller.auth.clone())
            .with_client_ip(caller.ip);
        registry().call(function, parts, args).await
    }

    /// The gateway's router over this database with the project's configuration, for HTTP-level
    /// tests with `tower::ServiceExt::oneshot` (no socket). Requests reach it as if over a
    /// connection from this machine (peer `127.0.0.1`, listener `127.0.0.1:8080`) unless they
    /// carry a `ConnectInfo<forge::gateway::Connection>` extension of their own; whether the
    /// dashboard treats one as local also depends on its `Host` header.
    pub fn router(&self) -> Result<axum::Router> {
        self.router_with(&self.config())
    }

    /// [`TestDatabase::router`] with a given configuration (`[gateway]` and `[auth]` apply).
    pub fn router_with(&self, config: &forge_core::ForgeConfig) -> Result<axum::Router> {
        let dir = &config.database.migrations_dir;
        let migrator = Migrator::with_app_dir(if dir.is_absolute() { dir.clone() } else { project_root().join(dir) })?;
        let gateway = GatewayState::with_config(self.pool().clone(), migrator, config);
        let app = crate::forge::http_app(
            gateway,
            config,
            JobRegistry::collect(&[]),
            tokio_util::sync::CancellationToken::new(),
        );
        Ok(app.layer(axum::middleware::map_request(|mut request: axum::extract::Request| async move {
            use axum::extract::ConnectInfo;
            if request.extensions().get::<ConnectInfo<Connection>>().is_none() {
                let local = Connection { peer: ([127, 0, 0, 1], 50_000).into(), local: ([127, 0, 0, 1], 8080).into() };
                request.extensions_mut().insert(ConnectInfo(local));
            }
            request
        })))
    }

    /// A read-only pool to this database (what queries get).
    pub fn read_pool(&self) -> &sqlx::PgPool {
        self.read_db().pool()
    }

    /// The read-only pool as queries get it (see [`crate::db::Db`]), shared by the calls made
    /// through [`TestDatabase::call`].
    fn read_db(&self) -> &crate::db::Db {
        self.read_db.get_or_init(|| crate::db::Db::new(read_only_pool(self.pool())))
    }
}
