//! Who is calling: `Authorization: Bearer <JWT>`, `Authorization: Bearer forge_…` or
//! `X-Api-Key: forge_…`, turned into an [`Auth`].
//!
//! | credential | checked | gives |
//! |------------|---------|-------|
//! | none | — | [`Auth::anonymous`] |
//! | JWT | signature with `[auth] jwt_secret` and only `jwt_algorithm` (never `none`); `exp` (required), `nbf`, `iss` and `aud` when configured | `sub` as the user id; `roles` (array) or `role`; `tenant` or `tenant_id` |
//! | API key | prefix lookup, SHA-256 compared in constant time, not revoked or expired | the key's roles and tenant |
//!
//! Credentials that are present but wrong are a 401 even for a public function: a client with
//! a broken token should learn it at once, not be served as anonymous.

use axum::http::{HeaderMap, header};
use forge_core::config::{AuthConfig, JwtAlgorithm};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sqlx::PgPool;

use super::api_keys::{API_KEY_PREFIX, ApiKeys};
use super::key_cache::KeyCache;
use crate::functions::Auth;

/// `X-API-Key`, named once: a header looked up by a `&str` has its name parsed each time.
static X_API_KEY: header::HeaderName = header::HeaderName::from_static("x-api-key");

/// Why credentials were refused: each is a 401 with this message as the problem's detail.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The `Authorization` header is not `Bearer <credential>`.
    #[error("the Authorization header must be `Bearer <JWT or API key>`")]
    MalformedHeader,
    /// A JWT was sent but the node has no `[auth] jwt_secret`.
    #[error("bearer JWTs are not accepted: the server has no [auth] jwt_secret")]
    JwtNotConfigured,
    /// The token has expired.
    #[error("the token has expired")]
    Expired,
    /// The token is not valid yet (`nbf`).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The token's `aud` is not this server's.
    #[error("the token's audience is not accepted")]
    WrongAudience,
    /// The token's `iss` is not this server's.
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    /// The token is signed with another algorithm (or none).
    #[error("the token's algorithm is not accepted")]
    WrongAlgorithm,
    /// Anything else wrong with a token: bad signature, bad encoding, missing claims.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The API key is unknown, revoked or expired.
    #[error("invalid API key: unknown, revoked or expired")]
    InvalidApiKey,
    /// The credentials could not be checked (the database failed): a 503, not a 401.
    #[error("credentials could not be checked: {0}")]
    Unavailable(String),
}

/// Checks credentials against the configuration and `forge_api_keys`.
#[derive(Clone)]
pub struct Authenticator {
    jwt: Option<(DecodingKey, Validation)>,
    keys: ApiKeys,
    /// Verified keys, shared by the node's authenticators (see [`KeyCache`]); found (and its
    /// listener started) with the first key presented, so a node that sees none opens nothing.
    cache: std::sync::Arc<std::sync::OnceLock<Option<std::sync::Arc<KeyCache>>>>,
    pool: PgPool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("jwt", &self.jwt.is_some()).finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator for `config`, looking API keys up through `pool`.
    pub fn new(config: &AuthConfig, pool: PgPool) -> Self {
        let jwt = config.jwt_secret.as_ref().filter(|s| !s.is_empty()).map(|secret| {
            let algorithm = match config.jwt_algorithm {
                JwtAlgorithm::HS256 => Algorithm::HS256,
                JwtAlgorithm::HS384 => Algorithm::HS384,
                JwtAlgorithm::HS512 => Algorithm::HS512,
            };
            let mut validation = Validation::new(algorithm);
            validation.leeway = config.jwt_leeway.as_std().as_secs();
            validation.validate_nbf = true;
            validation.set_required_spec_claims(&["exp", "sub"]);
            match &config.jwt_audience {
                Some(aud) => validation.set_audience(&[aud]),
                None => validation.validate_aud = false,
            }
            if let Some(iss) = &config.jwt_issuer {
                validation.set_issuer(&[iss]);
            }
            (DecodingKey::from_secret(secret.as_bytes()), validation)
        });
        Self { jwt, cache: std::sync::Arc::default(), keys: ApiKeys::new(pool.clone()), pool }
    }

    /// The caller the request's headers stand for.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Auth, AuthError> {
        let credential = match headers.get(header::AUTHORIZATION) {
            Some(value) => {
                let value = value.to_str().map_err(|_| AuthError::MalformedHeader)?;
                let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::MalformedHeader)?;
                if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
                    return Err(AuthError::MalformedHeader);
                }
                token.trim().to_owned()
            }
            None => match headers.get(&X_API_KEY) {
                Some(value) => value.to_str().map_err(|_| AuthError::InvalidApiKey)?.trim().to_owned(),
                None => return Ok(Auth::anonymous()),
            },
        };
        if credential.starts_with(API_KEY_PREFIX) {
            return match self.keys.verify_with(&credential, self.cache().map(|c| &**c)).await {
                Ok(Some(auth)) => Ok(auth),
                Ok(None) => Err(AuthError::InvalidApiKey),
                Err(e) => Err(AuthError::Unavailable(e.to_string())),
            };
        }
        self.verify_jwt(&credential)
    }

    /// The cache of verified keys, once a key has been presented.
    pub(super) fn cache(&self) -> Option<&std::sync::Arc<KeyCache>> {
        self.cache.get_or_init(|| KeyCache::shared(&self.pool)).as_ref()
    }

    /// The caller a JWT stands for.
    pub fn verify_jwt(&self, token: &str) -> Result<Auth, AuthError> {
        let (key, validation) = self.jwt.as_ref().ok_or(AuthError::JwtNotConfigured)?;
        let data = jsonwebtoken::decode::<Value>(token, key, validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::WrongAlgorithm,
            ErrorKind::InvalidSignature => AuthError::InvalidToken("bad signature".to_owned()),
            ErrorKind::MissingRequiredClaim(claim) => AuthError::InvalidToken(format!("missing claim `{claim}`")),
            _ => AuthError::InvalidToken("malformed token".to_owned()),
        })?;
        claims_to_auth(data.claims)
    }
}

/// What [`mint_token`] puts in a token.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TokenRequest {
    /// The user id (`sub`).
    pub sub: String,
    /// Its roles (`roles`).
    pub roles: Vec<String>,
    /// Its tenant (`tenant`), if any.
    pub tenant: Option<String>,
    /// How long it is valid (`exp` = now + ttl).
    pub ttl: std::time::Duration,
}

impl TokenRequest {
    /// A token for `sub` valid for `ttl`, with no roles or tenant.
    pub fn new(sub: impl Into<String>, ttl: std::time::Duration) -> Self {
        Self { sub: sub.into(), roles: Vec::new(), tenant: None, ttl }
    }
}

/// Signs a JWT with `[auth] jwt_secret` and `jwt_algorithm`, carrying `jwt_issuer` and
/// `jwt_audience` when configured: a token this application's gateway accepts. For development
/// and operations (`forge keys token`); real users get theirs from your identity provider.
pub fn mint_token(config: &AuthConfig, request: &TokenRequest) -> Result<String, AuthError> {
    let secret = config.jwt_secret.as_ref().filter(|s| !s.is_empty()).ok_or(AuthError::JwtNotConfigured)?;
    if request.sub.is_empty() {
        return Err(AuthError::InvalidToken("`sub` must be a non-empty string".to_owned()));
    }
    let algorithm = match config.jwt_algorithm {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
    };
    let now = chrono::Utc::now().timestamp();
    let ttl = i64::try_from(request.ttl.as_secs()).unwrap_or(i64::MAX / 2);
    let mut claims =
        serde_json::json!({ "sub": request.sub, "roles": request.roles, "iat": now, "exp": now.saturating_add(ttl) });
    if let Some(tenant) = &request.tenant {
        claims["tenant"] = tenant.clone().into();
    }
    if let Some(iss) = &config.jwt_issuer {
        claims["iss"] = iss.clone().into();
    }
    if let Some(aud) = &config.jwt_audience {
        claims["aud"] = aud.clone().into();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| AuthError::InvalidToken(format!("cannot sign the token: {e}")))
}

fn claims_to_auth(claims: Value) -> Result<Auth, AuthError> {
    let sub = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(AuthError::InvalidToken("`sub` must be a non-empty string".to_owned())),
    };
    let mut auth = Auth::user(sub);
    match (claims.get("roles"), claims.get("role")) {
        (Some(Value::Array(roles)), _) => {
            for role in roles {
                let Value::String(role) = role else {
                    return Err(AuthError::InvalidToken("`roles` must be an array of strings".to_owned()));
                };
                auth = auth.with_role(role.clone());
            }
        }
        (Some(_), _) => return Err(AuthError::InvalidToken("`roles` must be an array of strings".to_owned())),
        (None, Some(Value::String(role))) => auth = auth.with_role(role.clone()),
        _ => {}
    }
    match claims.get("tenant").or_else(|| claims.get("tenant_id")) {
        Some(Value::String(t)) => auth = auth.with_tenant(t.clone()),
        Some(Value::Number(n)) => auth = auth.with_tenant(n.to_string()),
        _ => {}
    }
    Ok(auth.with_claims(claims))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_minted_token_is_accepted_with_its_claims() {
        let mut config = AuthConfig::default();
        config.jwt_secret = Some("s3cret".to_owned());
        config.jwt_issuer = Some("forge-cli".to_owned());
        config.jwt_audience = Some("shop".to_owned());
        let mut request = TokenRequest::new("u7", std::time::Duration::from_secs(3600));
        request.roles = vec!["forge:admin".to_owned()];
        request.tenant = Some("acme".to_owned());
        let token = mint_token(&config, &request).expect("token");
        let pool = sqlx::PgPool::connect_lazy("postgres://unused@127.0.0.1/none").expect("lazy pool");
        let auth = Authenticator::new(&config, pool).verify_jwt(&token).expect("accepted");
        assert_eq!(auth.user_id(), Some("u7"));
        assert!(auth.has_role("forge:admin"));
        assert_eq!(auth.tenant(), Some("acme"));
        let mut other = config.clone();
        other.jwt_secret = Some("other".to_owned());
        assert!(mint_token(&AuthConfig::default(), &request).is_err(), "no secret, no token");
        let pool = sqlx::PgPool::connect_lazy("postgres://unused@127.0.0.1/none").expect("lazy pool");
        assert!(Authenticator::new(&other, pool).verify_jwt(&token).is_err(), "another secret refuses it");
    }

    #[test]
    fn claims_give_user_roles_and_tenant() {
        let auth =
            claims_to_auth(serde_json::json!({"sub": "u1", "roles": ["admin", "ops"], "tenant_id": 7})).expect("valid");
        assert_eq!(auth.user_id(), Some("u1"));
        assert!(auth.has_role("admin") && auth.has_role("ops"));
        assert_eq!(auth.tenant(), Some("7"));
        let single = claims_to_auth(serde_json::json!({"sub": "u2", "role": "admin"})).expect("valid");
        assert!(single.has_role("admin"));
        assert!(claims_to_auth(serde_json::json!({"sub": ""})).is_err());
        assert!(claims_to_auth(serde_json::json!({"sub": "u", "roles": "admin"})).is_err());
    }
}
