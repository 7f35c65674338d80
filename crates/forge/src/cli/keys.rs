//! `forge keys …`: create, list, rotate and revoke API keys.

use clap::Subcommand;
use forge::gateway::{ApiKeys, NewApiKey, TokenRequest, mint_token};

#[derive(Debug, Subcommand)]
pub(crate) enum KeysAction {
    /// Create a key; it is printed once and never stored.
    Create {
        /// A name for people: what or who uses the key.
        name: String,
        /// A role the key grants (repeat for several).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// The tenant the key acts for.
        #[arg(long)]
        tenant: Option<String>,
        /// Make the key stop working after this long, such as "90d".
        #[arg(long)]
        expires_in: Option<forge::config::Duration>,
    },
    /// List every key (never their secrets).
    List,
    /// Print a JWT signed with `[auth] jwt_secret` (for development and operations: your users'
    /// tokens come from your identity provider). Needs no database.
    Token {
        /// The user id (`sub`).
        #[arg(long)]
        sub: String,
        /// A role it grants (repeat for several).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// The tenant it acts for.
        #[arg(long)]
        tenant: Option<String>,
        /// How long it is valid, such as "1h".
        #[arg(long, default_value = "1h")]
        ttl: forge::config::Duration,
    },
    /// Revoke a key at once.
    Revoke {
        /// The key's id (from `forge keys list`).
        id: uuid::Uuid,
    },
    /// Replace a key with a new one granting the same; the old one works for --grace more.
    Rotate {
        /// The key's id.
        id: uuid::Uuid,
        /// How long the old key keeps working, such as "1h" (default: revoked at once).
        #[arg(long)]
        grace: Option<forge::config::Duration>,
    },
}

/// `forge keys token`.
pub(crate) fn token(
    config: &forge::ForgeConfig,
    sub: String,
    roles: Vec<String>,
    tenant: Option<String>,
    ttl: forge::config::Duration,
    json: bool,
) -> Result<(), String> {
    let mut request = TokenRequest::new(sub, ttl.as_std());
    request.roles = roles;
    request.tenant = tenant;
    let token = mint_token(&config.auth, &request).map_err(|e| match e {
        forge::gateway::AuthError::JwtNotConfigured => {
            "no [auth] jwt_secret is configured (forge.toml or FORGE_AUTH_JWT_SECRET): there is nothing to sign with"
                .to_owned()
        }
        other => other.to_string(),
    })?;
    let expires_at = chrono::Utc::now() + chrono::Duration::from_std(ttl.as_std()).unwrap_or_default();
    super::output::done(
        json,
        serde_json::json!({ "token": token, "sub": request.sub, "roles": request.roles, "expires_at": expires_at }),
        &token,
    )
}

impl KeysAction {
    /// Whether the command only reads.
    pub(crate) fn is_read_only(&self) -> bool {
        matches!(self, Self::List)
    }
}

pub(crate) async fn keys(keys: ApiKeys, action: KeysAction, json: bool) -> Result<(), String> {
    let shown = match action {
        KeysAction::Create { name, roles, tenant, expires_in } => {
            let expires_at = match expires_in {
                Some(d) => Some(
                    chrono::Utc::now()
                        + chrono::Duration::from_std(d.as_std()).map_err(|_| "--expires-in is too long".to_owned())?,
                ),
                None => None,
            };
            let created = keys
                .create(NewApiKey { name, roles, tenant, expires_at, ..NewApiKey::default() })
                .await
                .map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::to_string(&created).map_err(|e| e.to_string())?);
            } else {
                println!("created key {} ({})", created.record.id, created.record.name);
                println!("{}", created.key);
                println!("store it now: it is not kept and cannot be shown again");
            }
            return Ok(());
        }
        KeysAction::Rotate { id, grace } => {
            let grace_std = grace.map(|g| g.as_std()).unwrap_or_default();
            let created = keys.rotate(id, grace_std).await.map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::to_string(&created).map_err(|e| e.to_string())?);
            } else {
                println!("rotated {id}: new key {} ({})", created.record.id, created.record.name);
                println!("{}", created.key);
                match grace {
                    Some(grace) => println!("the old key keeps working for {grace}"),
                    None => println!("the old key is revoked"),
                }
            }
            return Ok(());
        }
        KeysAction::Token { .. } => unreachable!("handled before connecting"),
        KeysAction::Revoke { id } => vec![keys.revoke(id).await.map_err(|e| e.to_string())?],
        KeysAction::List => keys.list().await.map_err(|e| e.to_string())?,
    };
    if json {
        println!("{}", serde_json::to_string(&shown).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!("{:<36}  {:<20}  {:<12}  {:<16}  {:<8}  LAST USED", "ID", "NAME", "PREFIX", "ROLES", "STATE");
    for key in shown {
        let state = if key.is_live() {
            "live"
        } else if key.revoked_at.is_some_and(|t| t <= chrono::Utc::now()) {
            "revoked"
        } else {
            "expired"
        };
        let used = key.last_used_at.map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
        println!(
            "{:<36}  {:<20}  {:<12}  {:<16}  {:<8}  {used}",
            key.id,
            key.name,
            key.prefix,
            key.roles.join(","),
            state
        );
    }
    Ok(())
}
