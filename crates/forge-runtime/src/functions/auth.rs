//! [`Auth`]: who is calling, as the gateway established it.

use serde::Serialize;

use super::ForgeError;

/// How the caller proved who they are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthMethod {
    /// No credentials.
    Anonymous,
    /// A bearer JWT checked against `[auth] jwt_secret`.
    Jwt,
    /// An API key from `forge_api_keys`.
    ApiKey {
        /// The key's id.
        key_id: uuid::Uuid,
        /// The key's name.
        name: String,
    },
}

/// The caller of a function: anonymous, a user (from a JWT) or an API key.
///
/// ```
/// use forge_runtime::functions::Auth;
///
/// let auth = Auth::user("u-1").with_role("admin").with_tenant("acme");
/// assert!(auth.is_authenticated());
/// assert!(auth.has_role("admin"));
/// assert_eq!(auth.user_id(), Some("u-1"));
/// assert_eq!(auth.tenant(), Some("acme"));
/// assert!(!Auth::anonymous().is_authenticated());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Auth {
    method: AuthMethod,
    user_id: Option<String>,
    roles: Vec<String>,
    tenant: Option<String>,
    claims: serde_json::Value,
    /// The job API client an API key belongs to, with the key's scopes (empty: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<ClientAuth>,
}

/// A job API client's credentials: which client, and what its key may do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientAuth {
    /// The client.
    pub id: uuid::Uuid,
    /// The key's scopes; empty means every scope.
    pub scopes: Vec<String>,
}

impl Default for Auth {
    fn default() -> Self {
        Self::anonymous()
    }
}

impl Auth {
    /// No credentials.
    pub fn anonymous() -> Self {
        Self {
            method: AuthMethod::Anonymous,
            user_id: None,
            roles: Vec::new(),
            tenant: None,
            claims: serde_json::Value::Null,
            client: None,
        }
    }

    /// A user known by `user_id`, as a verified JWT's `sub` gives it.
    pub fn user(user_id: impl Into<String>) -> Self {
        Self { method: AuthMethod::Jwt, user_id: Some(user_id.into()), ..Self::anonymous() }
    }

    /// An API key.
    pub fn api_key(key_id: uuid::Uuid, name: impl Into<String>) -> Self {
        Self { method: AuthMethod::ApiKey { key_id, name: name.into() }, ..Self::anonymous() }
    }

    /// Adds a role.
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        let role = role.into();
        if !self.roles.contains(&role) {
            self.roles.push(role);
        }
        self
    }

    /// Adds roles.
    pub fn with_roles<I: IntoIterator<Item = S>, S: Into<String>>(self, roles: I) -> Self {
        roles.into_iter().fold(self, Auth::with_role)
    }

    /// Sets the tenant.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Makes the caller job API client `client`, with its key's `scopes` (empty: all).
    pub fn with_client(mut self, client: uuid::Uuid, scopes: Vec<String>) -> Self {
        self.client = Some(ClientAuth { id: client, scopes });
        self
    }

    /// The job API client the caller's key belongs to, if any.
    pub fn client(&self) -> Option<&ClientAuth> {
        self.client.as_ref()
    }

    /// Sets every claim of the token, for functions that read their own.
    pub fn with_claims(mut self, claims: serde_json::Value) -> Self {
        self.claims = claims;
        self
    }

    /// How the caller authenticated.
    pub fn method(&self) -> &AuthMethod {
        &self.method
    }

    /// Whether the caller sent valid credentials.
    pub fn is_authenticated(&self) -> bool {
        self.method != AuthMethod::Anonymous
    }

    /// The user's id (a JWT's `sub`); `None` for anonymous callers and API keys.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// The user's id, or [`ForgeError::Unauthorized`].
    pub fn require_user(&self) -> Result<&str, ForgeError> {
        self.user_id().ok_or(ForgeError::Unauthorized)
    }

    /// The caller's roles.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// Whether the caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// The caller's tenant (a JWT's `tenant` or `tenant_id` claim, or the API key's tenant).
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Every claim of the caller's JWT (`null` for other callers).
    pub fn claims(&self) -> &serde_json::Value {
        &self.claims
    }

    /// A stable name for the caller, used as a rate-limit key: `user:<id>`, `key:<id>` or
    /// `None` when anonymous.
    pub fn subject(&self) -> Option<String> {
        match (&self.method, &self.user_id) {
            (AuthMethod::ApiKey { key_id, .. }, _) => Some(format!("key:{key_id}")),
            (_, Some(user)) => Some(format!("user:{user}")),
            _ => None,
        }
    }
}
