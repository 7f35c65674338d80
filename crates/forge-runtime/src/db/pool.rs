//! Choosing the server and opening the pool.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use forge_core::ForgeConfig;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use super::embedded::{EmbeddedError, EmbeddedPostgres};
use super::sql;

/// A connection idle in a pool for less than this is handed out without a ping.
///
/// sqlx pings every connection it takes from the idle queue by default: a round trip (and a
/// wake-up of the server's backend) before every query of a short request, which on a busy
/// node costs more than the query. A connection that was in use a moment ago is alive as far as
/// a ping could tell; one idle for longer (as every connection is after a server restart, which
/// takes longer than this) is pinged, and replaced if the ping fails.
pub(crate) const PING_AFTER_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// The options every Forge pool starts from: sqlx's, pinging only connections idle for
/// [`PING_AFTER_IDLE`] or more, and closing those opened before the last
/// [`replace_connections_opened_before_now`].
pub(crate) fn pool_options() -> PgPoolOptions {
    options_replacing(&REPLACEMENT)
}

/// [`pool_options`], closing the connections `replacement` asks to replace.
fn options_replacing(replacement: &'static Replacement) -> PgPoolOptions {
    PgPoolOptions::new().test_before_acquire(false).before_acquire(move |conn, meta| {
        Box::pin(async move {
            if replacement.due(meta.age) {
                // Closed; the pool takes or opens another.
                return Ok(false);
            }
            if meta.idle_for >= PING_AFTER_IDLE {
                conn.ping().await?;
            }
            Ok(true)
        })
    })
}

/// The moment in this process's life before which connections are to be replaced: in
/// nanoseconds after [`process_start`], 0 for never.
struct Replacement(AtomicU64);

impl Replacement {
    const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Every connection opened before now is due for replacement.
    fn now(&self) {
        let since_start = u64::try_from(process_start().elapsed().as_nanos()).unwrap_or(u64::MAX).max(1);
        self.0.fetch_max(since_start, Ordering::Relaxed);
    }

    /// Whether a connection `age` old was opened before the last [`Replacement::now`].
    fn due(&self, age: Duration) -> bool {
        let mark = self.0.load(Ordering::Relaxed);
        mark != 0 && process_start().elapsed().saturating_sub(age) < Duration::from_nanos(mark)
    }
}

static REPLACEMENT: Replacement = Replacement::new();

fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Every connection of every Forge pool in this process opened before now is closed instead of
/// handed out the next time it is taken from its pool (one in use finishes what it does first).
///
/// For a change of the schema that makes statements prepared before it fail: Postgres refuses to
/// run a prepared statement whose result columns changed type ("cached plan must not change
/// result type"), and sqlx keeps a connection's prepared statements as long as the connection.
/// A node calls it when its heartbeat finds the schema epoch moved (see `cluster::node`).
pub(crate) fn replace_connections_opened_before_now() {
    REPLACEMENT.now();
}

/// The database Forge creates and uses inside the embedded cluster.
pub const EMBEDDED_DATABASE: &str = "forge";

/// Why the database could not be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The embedded cluster could not be started.
    #[error("embedded PostgreSQL: {0}")]
    Embedded(#[from] EmbeddedError),
    /// `database.url` is not a valid PostgreSQL URL.
    #[error("database.url is not a valid PostgreSQL URL ({url}): {source}")]
    InvalidUrl {
        /// The URL, password removed.
        url: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The server did not answer.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The server, password removed.
        target: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The server did not answer within `database.connect_timeout`.
    #[error("cannot connect to {target}: no answer within {timeout}")]
    Timeout {
        /// The server, password removed.
        target: String,
        /// The timeout.
        timeout: String,
    },
}

/// A connection pool to the configured server, and the embedded cluster behind it if Forge
/// started one.
#[derive(Debug)]
pub struct Database {
    pool: PgPool,
    read_pool: PgPool,
    control_pool: PgPool,
    target: String,
    embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// Connects to `database.url`, or, when it is unset, starts (or joins) the embedded cluster
    /// in `database.embedded_dir` (relative to `project_dir`) and connects to its `forge`
    /// database, creating that database on first use.
    pub async fn connect(config: &ForgeConfig, project_dir: &Path) -> Result<Self, DbError> {
        let (options, target, embedded) = match &config.database.url {
            Some(url) => {
                let options = PgConnectOptions::from_str(url)
                    .map_err(|source| DbError::InvalidUrl { url: redact_url(url), source })?;
                (options, redact_url(url), None)
            }
            None => {
                let dir = resolve(project_dir, &config.database.embedded_dir);
                let cluster =
                    tokio::task::spawn_blocking(move || EmbeddedPostgres::start(dir)).await.map_err(|e| {
                        EmbeddedError::Io {
                            action: "could not start",
                            path: PathBuf::from("embedded cluster"),
                            source: std::io::Error::other(e.to_string()),
                        }
                    })??;
                let admin = cluster.connect_options("postgres");
                let target = cluster.url(EMBEDDED_DATABASE);
                ensure_database(&admin, EMBEDDED_DATABASE)
                    .await
                    .map_err(|source| DbError::Connect { target: target.clone(), source })?;
                (cluster.connect_options(EMBEDDED_DATABASE), target, Some(cluster))
            }
        };
        let timeout = config.database.connect_timeout;
        let connect = pool_options()
            .max_connections(config.database.pool_size.get())
            .acquire_timeout(config.database.acquire_timeout.as_std())
            .idle_timeout(Some(config.database.idle_timeout.as_std()))
            .connect_with(options);
        let pool = match tokio::time::timeout(timeout.as_std(), connect).await {
            Ok(Ok(pool)) => pool,
            Ok(Err(source)) => return Err(DbError::Connect { target, source }),
            Err(_) => {
                return Err(DbError::Timeout { target, timeout: timeout.to_string() });
            }
        };
        let read_pool = read_only_pool(&pool);
        let control_pool = control_pool(&pool, config.database.control_pool_size.get());
        Ok(Self { pool, read_pool, control_pool, target, embedded })
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A pool of read-only sessions to the same database, for queries (see [`read_only_pool`]).
    pub fn read_pool(&self) -> &PgPool {
        &self.read_pool
    }

    /// The control plane's own small pool (`[database] control_pool_size`): heartbeats, lease
    /// renewals, the completer and the leader's duties, which application work cannot starve.
    pub fn control_pool(&self) -> &PgPool {
        &self.control_pool
    }

    /// Where the pool connects, password removed.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Where the pool connects, in words: `database forge as app on db.internal:5432`,
    /// `database forge as app over the Unix socket in /run/postgresql`, or `the embedded
    /// PostgreSQL in DIR (database forge, over its Unix socket)` when Forge runs the server.
    pub fn describe(&self) -> String {
        let options = self.pool.connect_options();
        match &self.embedded {
            Some(cluster) => format!(
                "the embedded PostgreSQL in {} (database {}, over its Unix socket)",
                cluster.dir().display(),
                options.get_database().unwrap_or(options.get_username())
            ),
            None => describe_options(&options),
        }
    }

    /// Whether Forge started (or joined) an embedded cluster for this database.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// Closes the pool and, if this process is the embedded cluster's last user, stops it.
    pub async fn close(self) -> Result<(), DbError> {
        self.read_pool.close().await;
        self.control_pool.close().await;
        self.pool.close().await;
        if let Some(cluster) = self.embedded {
            tokio::task::spawn_blocking(move || cluster.stop()).await.map_err(|e| EmbeddedError::Io {
                action: "could not stop",
                path: PathBuf::from("embedded cluster"),
                source: std::io::Error::other(e.to_string()),
            })??;
        }
        Ok(())
    }
}

/// [`Database::describe`] without the embedded prefix.
fn describe_options(options: &PgConnectOptions) -> String {
    let database = options.get_database().unwrap_or(options.get_username());
    let place = match options.get_socket() {
        Some(dir) => format!("over the Unix socket in {}", dir.display()),
        None if options.get_host().starts_with('/') => format!("over the Unix socket in {}", options.get_host()),
        None => format!("on {}:{}", options.get_host(), options.get_port()),
    };
    format!("database {database} as {} {place}", options.get_username())
}

/// A pool to the database `pool` connects to whose sessions are read-only
/// (`default_transaction_read_only = on`): a write through it fails with SQLSTATE 25006. It has
/// `pool`'s size and connects lazily, so a node that serves no query opens none.
pub fn read_only_pool(pool: &PgPool) -> PgPool {
    let options = (*pool.connect_options()).clone().options([("default_transaction_read_only", "on")]);
    let settings = pool.options();
    pool_options()
        .max_connections(settings.get_max_connections())
        .acquire_timeout(settings.get_acquire_timeout())
        .idle_timeout(settings.get_idle_timeout())
        .connect_lazy_with(options)
}

/// The control plane's pool: `size` connections to the database `pool` connects to, named
/// `forge-control` in `pg_stat_activity`, opened as needed.
pub(crate) fn control_pool(pool: &PgPool, size: u32) -> PgPool {
    let options = (*pool.connect_options()).clone().application_name("forge-control");
    let settings = pool.options();
    pool_options()
        .max_connections(size)
        .acquire_timeout(settings.get_acquire_timeout())
        .idle_timeout(settings.get_idle_timeout())
        .connect_lazy_with(options)
}

/// Creates `database` on the server `admin` points at, unless it exists. Safe to race: a
/// concurrent creation of the same database counts as success.
pub async fn ensure_database(admin: &PgConnectOptions, database: &str) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect_with(admin).await?;
    let exists: bool = sqlx::query_scalar(sql::DATABASE_EXISTS).bind(database).fetch_one(&mut conn).await?;
    if !exists {
        let create = format!("create database {}", quote_ident(database));
        match sqlx::raw_sql(&create).execute(&mut conn).await {
            Ok(_) => {}
            // 42P04 duplicate_database, 23505 the catalog's unique index: another process won.
            Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(e) => return Err(e),
        }
    }
    conn.close().await
}

/// `"name"` with inner quotes doubled: a safe SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_owned() } else { base.join(path) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A column's type changed under a connection's prepared statement: Postgres refuses it for
    /// as long as the connection lives, until the connection is replaced.
    #[tokio::test]
    async fn a_connection_opened_before_a_replacement_is_closed_instead_of_handed_out() {
        static LOCAL: Replacement = Replacement::new();
        let db = crate::testing::TestDatabase::new().await.expect("db");
        let pool = options_replacing(&LOCAL).max_connections(1).connect(db.url()).await.expect("pool");
        sqlx::query("create table widths (v int)").execute(&pool).await.expect("table");
        let select = || sqlx::query("select v from widths");
        select().fetch_all(&pool).await.expect("prepared");
        sqlx::query("alter table widths alter v type bigint").execute(&pool).await.expect("alter");

        let refused = select().fetch_all(&pool).await.expect_err("the cached statement is refused");
        assert_eq!(refused.as_database_error().and_then(|e| e.code()).as_deref(), Some("0A000"), "{refused}");
        let again = select().fetch_all(&pool).await.expect_err("and again, on the same connection");
        assert_eq!(again.as_database_error().and_then(|e| e.code()).as_deref(), Some("0A000"));

        LOCAL.now();
        select().fetch_all(&pool).await.expect("a new connection prepares it anew");
        assert!(!LOCAL.due(Duration::ZERO), "a connection opened after the replacement is kept");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgres://h/db?sslmode=off&password=x"), "postgres://h/db?sslmode=off&password=***");
    }

    #[test]
    fn where_a_pool_connects_is_said_in_words() {
        let words = |url: &str| describe_options(&PgConnectOptions::from_str(url).expect("url"));
        assert_eq!(words("postgres://app:pw@db.internal:6000/shop"), "database shop as app on db.internal:6000");
        assert_eq!(
            words("postgres://app@localhost/shop?host=/run/postgresql"),
            "database shop as app over the Unix socket in /run/postgresql"
        );
        let socket = PgConnectOptions::new().socket("/tmp/x").username("postgres").database("forge");
        assert_eq!(describe_options(&socket), "database forge as postgres over the Unix socket in /tmp/x");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("forge"), "\"forge\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
