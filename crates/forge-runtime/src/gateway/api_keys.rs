//! API keys: created, listed, rotated and revoked through [`ApiKeys`] (and `forge keys …`).
//!
//! A key reads `forge_<prefix>_<secret>`: 12 hex digits of prefix that find its row, and 64 of
//! secret (244 random bits). Only the SHA-256 of the whole key is stored; a presented key is
//! hashed and compared with the stored hash in constant time. The key itself is shown once, when
//! it is created, and never again.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

pub(crate) use super::key_cache::key_changed;
use super::key_cache::{KeyCache, Verified};
use super::sql;
use crate::functions::Auth;

/// What every key starts with.
pub const API_KEY_PREFIX: &str = "forge_";

/// An API key's record (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ApiKey {
    /// Its id.
    pub id: Uuid,
    /// A name for people: what or who uses it.
    pub name: String,
    /// The public part of the key, `forge_<prefix>_…`.
    pub prefix: String,
    /// The roles it grants.
    pub roles: Vec<String>,
    /// The tenant it acts for, if any.
    pub tenant: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last used (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was (or will be, after a rotation's grace period) revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it stops working by itself.
    pub expires_at: Option<DateTime<Utc>>,
    /// The job API client it belongs to, if any.
    pub client_id: Option<Uuid>,
    /// What a client's key may do (empty: everything a client may).
    pub scopes: Vec<String>,
}

impl ApiKey {
    /// Whether the key is accepted now.
    pub fn is_live(&self) -> bool {
        let now = Utc::now();
        self.revoked_at.is_none_or(|t| t > now) && self.expires_at.is_none_or(|t| t > now)
    }
}

/// What verification reads of a live key.
#[derive(sqlx::FromRow)]
struct StoredKey {
    id: Uuid,
    name: String,
    key_hash: Vec<u8>,
    roles: Vec<String>,
    tenant: Option<String>,
    last_used_at: Option<DateTime<Utc>>,
    client_id: Option<Uuid>,
    scopes: Vec<String>,
    revoked_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

/// A key just created: its record and, this once, the key itself.
#[derive(Clone, Debug, Serialize)]
pub struct CreatedApiKey {
    /// The record.
    #[serde(flatten)]
    pub record: ApiKey,
    /// The full key, `forge_<prefix>_<secret>`: give it to the client now, it is not stored.
    pub key: String,
}

/// What a new key grants.
#[derive(Clone, Debug, Default)]
pub struct NewApiKey {
    /// A name for people.
    pub name: String,
    /// Roles granted.
    pub roles: Vec<String>,
    /// Tenant, if any.
    pub tenant: Option<String>,
    /// When the key stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// The job API client it belongs to, if any.
    pub client_id: Option<Uuid>,
    /// What a client's key may do (empty: everything).
    pub scopes: Vec<String>,
}

impl NewApiKey {
    /// A key named `name` with no roles.
    pub fn named(name: impl Into<String>) -> Self {
        Self { name: name.into(), ..Self::default() }
    }

    /// Adds a role.
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }

    /// Sets the tenant.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the expiry.
    pub fn expires_at(mut self, at: DateTime<Utc>) -> Self {
        self.expires_at = Some(at);
        self
    }
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// No key has this id.
    #[error("no API key with id {0}")]
    NotFound(Uuid),
    /// The name is empty or too long.
    #[error("an API key's name must be 1 to 100 characters")]
    InvalidName,
    /// The key is revoked: it cannot be rotated (create a new one).
    #[error("API key {0} is revoked: it cannot be rotated (create a new key instead)")]
    Revoked(Uuid),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The API keys of an application.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), forge_runtime::gateway::ApiKeyError> {
/// use forge_runtime::gateway::{ApiKeys, NewApiKey};
///
/// let keys = ApiKeys::new(pool);
/// let created = keys.create(NewApiKey::named("billing-service").with_role("admin")).await?;
/// println!("give this to the client once: {}", created.key);
/// keys.revoke(created.record.id).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ApiKeys {
    pool: PgPool,
}

impl ApiKeys {
    /// Keys stored through `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates a key.
    pub async fn create(&self, new: NewApiKey) -> Result<CreatedApiKey, ApiKeyError> {
        self.insert(new, None).await
    }

    /// Every key, live or not, oldest first.
    pub async fn list(&self) -> Result<Vec<ApiKey>, ApiKeyError> {
        Ok(sqlx::query_as(sql::LIST_KEYS).fetch_all(&self.pool).await?)
    }

    /// One key.
    pub async fn get(&self, id: Uuid) -> Result<ApiKey, ApiKeyError> {
        sqlx::query_as(sql::GET_KEY).bind(id).fetch_optional(&self.pool).await?.ok_or(ApiKeyError::NotFound(id))
    }

    /// Revokes a key at once. Revoking a revoked key changes nothing.
    pub async fn revoke(&self, id: Uuid) -> Result<ApiKey, ApiKeyError> {
        sqlx::query(sql::REVOKE_KEY).bind(id).bind(Utc::now()).execute(&self.pool).await?;
        key_changed(&self.pool);
        self.get(id).await
    }

    /// Replaces a key with a new one granting the same roles, tenant and expiry; the old key
    /// keeps working for `grace` (zero: it is revoked at once), so clients can switch over.
    pub async fn rotate(&self, id: Uuid, grace: std::time::Duration) -> Result<CreatedApiKey, ApiKeyError> {
        let mut tx = self.pool.begin().await?;
        let created = rotate_in(&mut tx, id, grace).await?;
        tx.commit().await?;
        key_changed(&self.pool);
        Ok(created)
    }

    /// The caller a presented key stands for, or `None` if it is unknown, revoked, expired or
    /// malformed. Records the use (at most once a minute) without making the caller wait.
    pub async fn verify(&self, presented: &str) -> Result<Option<Auth>, sqlx::Error> {
        self.verify_with(presented, None).await
    }

    /// [`ApiKeys::verify`], answered from `cache` when it remembers the key (see
    /// [`KeyCache`]) and remembered there otherwise.
    pub(crate) async fn verify_with(
        &self,
        presented: &str,
        cache: Option<&KeyCache>,
    ) -> Result<Option<Auth>, sqlx::Error> {
        let Some(prefix) = split_prefix(presented) else {
            return Ok(None);
        };
        let presented_hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if let Some((auth, touch)) = cache.and_then(|cache| cache.get(&presented_hash)) {
            if let Some(id) = touch {
                self.touch(id);
            }
            return Ok(Some(auth));
        }
        let epoch = cache.map(KeyCache::epoch);
        let row: Option<StoredKey> = sqlx::query_as(sql::FIND_KEY).bind(prefix).fetch_optional(&self.pool).await?;
        let Some(StoredKey {
            id,
            name,
            key_hash: stored,
            roles,
            tenant,
            last_used_at: last_used,
            client_id,
            scopes,
            revoked_at,
            expires_at,
        }) = row
        else {
            return Ok(None);
        };
        if !bool::from(presented_hash.as_slice().ct_eq(stored.as_slice())) {
            return Ok(None);
        }
        if last_used.is_none_or(|t| Utc::now() - t > chrono::Duration::minutes(1)) {
            self.touch(id);
        }
        let mut auth = Auth::api_key(id, name).with_roles(roles);
        if let Some(tenant) = tenant {
            auth = auth.with_tenant(tenant);
        }
        if let Some(client) = client_id {
            auth = auth.with_client(client, scopes);
        }
        if let (Some(cache), Some(epoch)) = (cache, epoch) {
            let until = match (revoked_at, expires_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let verified = Verified { auth: auth.clone(), id, until, last_used: Some(Utc::now()) };
            cache.put(presented_hash, verified, epoch);
        }
        Ok(Some(auth))
    }

    /// Records a key's use, in the background.
    fn touch(&self, id: Uuid) {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let _ = sqlx::query(sql::TOUCH_KEY).bind(id).execute(&pool).await;
        });
    }

    async fn insert(&self, new: NewApiKey, rotated_from: Option<Uuid>) -> Result<CreatedApiKey, ApiKeyError> {
        let mut conn = self.pool.acquire().await?;
        insert(&mut conn, new, rotated_from).await
    }
}

/// [`ApiKeys::rotate`] inside the caller's transaction; call [`key_changed`] once it commits.
pub(crate) async fn rotate_in(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    grace: std::time::Duration,
) -> Result<CreatedApiKey, ApiKeyError> {
    let old: ApiKey = sqlx::query_as(sql::GET_KEY_FOR_UPDATE)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(ApiKeyError::NotFound(id))?;
    if old.revoked_at.is_some_and(|at| at <= Utc::now()) {
        return Err(ApiKeyError::Revoked(id));
    }
    let new = NewApiKey {
        name: old.name,
        roles: old.roles,
        tenant: old.tenant,
        expires_at: old.expires_at,
        client_id: old.client_id,
        scopes: old.scopes,
    };
    let created = insert(&mut *conn, new, Some(id)).await?;
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let revoke_at = Utc::now().checked_add_signed(grace).unwrap_or(DateTime::<Utc>::MAX_UTC);
    sqlx::query(sql::REVOKE_KEY).bind(id).bind(revoke_at).execute(&mut *conn).await?;
    Ok(created)
}

/// Revokes a key at once inside the caller's transaction; returns its record. Call
/// [`key_changed`] once it commits.
pub(crate) async fn revoke_in(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<ApiKey, ApiKeyError> {
    sqlx::query(sql::REVOKE_KEY).bind(id).bind(Utc::now()).execute(&mut *conn).await?;
    sqlx::query_as(sql::GET_KEY).bind(id).fetch_optional(&mut *conn).await?.ok_or(ApiKeyError::NotFound(id))
}

/// Creates a key inside the caller's transaction (`rotated_from`: the key it replaces).
pub(crate) async fn insert(
    conn: &mut sqlx::PgConnection,
    new: NewApiKey,
    rotated_from: Option<Uuid>,
) -> Result<CreatedApiKey, ApiKeyError> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiKeyError::InvalidName);
    }
    let prefix = Uuid::new_v4().simple().to_string()[..12].to_owned();
    let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let key = format!("{API_KEY_PREFIX}{prefix}_{secret}");
    let hash = Sha256::digest(key.as_bytes()).to_vec();
    let record: ApiKey = sqlx::query_as(sql::INSERT_KEY)
        .bind(Uuid::new_v4())
        .bind(name)
        .bind(&prefix)
        .bind(hash)
        .bind(&new.roles)
        .bind(&new.tenant)
        .bind(new.expires_at)
        .bind(rotated_from)
        .bind(new.client_id)
        .bind(&new.scopes)
        .fetch_one(conn)
        .await?;
    Ok(CreatedApiKey { record, key })
}

/// `forge_<prefix>_<secret>` → `<prefix>`.
fn split_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(API_KEY_PREFIX)?;
    let (prefix, secret) = rest.split_once('_')?;
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    (prefix.len() == 12 && secret.len() == 64 && hex(prefix) && hex(secret)).then_some(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_keys_have_a_prefix() {
        let good = format!("forge_0123456789ab_{}", "c".repeat(64));
        assert_eq!(split_prefix(&good), Some("0123456789ab"));
        assert_eq!(split_prefix("forge_0123456789ab_short"), None);
        assert_eq!(split_prefix(&good.replace("forge_", "other_")), None);
        assert_eq!(split_prefix(&format!("forge_0123456789zz_{}", "c".repeat(64))), None);
    }
}
