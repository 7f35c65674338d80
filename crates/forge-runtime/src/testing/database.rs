//! [`TestDatabase`]: a fresh, migrated database per test, cloned from a template on the
//! machine's server or the project's embedded cluster.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use forge_core::ForgeConfig;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::db::{DbError, EmbeddedPostgres, Migrator, quote_ident};
use crate::error::{Error, Result};

/// The embedded cluster this process started or joined; stopped at exit.
static EMBEDDED: Mutex<Option<EmbeddedPostgres>> = Mutex::new(None);
static EMBEDDED_STARTED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
/// Templates known to be complete on their server.
static TEMPLATES: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// A database of its own for one test.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    pool: PgPool,
    pub(super) read_db: OnceLock<crate::db::Db>,
    admin: PgConnectOptions,
}

impl TestDatabase {
    /// A fresh database with Forge's migrations and the project's own applied.
    pub async fn new() -> Result<Self> {
        let root = project_root();
        let config = ForgeConfig::load_or_default(root.join("forge.toml"))?;
        let dir = &config.database.migrations_dir;
        let migrator = Migrator::with_app_dir(if dir.is_absolute() { dir.clone() } else { root.join(dir) })?;
        Self::with_migrator(&migrator).await
    }

    /// A fresh database with exactly `migrator`'s migrations applied.
    pub async fn with_migrator(migrator: &Migrator) -> Result<Self> {
        let server = Server::resolve().await?;
        let template = format!("forge_tpl_{}", migrator.fingerprint());
        ensure_template(&server, &template, migrator).await?;
        Self::create(server, Some(&template)).await
    }

    /// A fresh, empty database: no migrations, not even Forge's. For testing migrations.
    pub async fn empty() -> Result<Self> {
        let server = Server::resolve().await?;
        Self::create(server, None).await
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A `postgres://` URL for this database, for child processes or `psql`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A pool of up to 5 connections to this database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Takes this database away, as an outage would: new connections to it are refused and every
    /// open one is ended (other databases on the server are untouched). Undo it with
    /// [`TestDatabase::restore_connections`].
    pub async fn cut_connections(&self) -> Result<()> {
        self.allow_connections(false).await
    }

    /// Ends what [`TestDatabase::cut_connections`] began: connections are accepted again.
    pub async fn restore_connections(&self) -> Result<()> {
        self.allow_connections(true).await
    }

    async fn allow_connections(&self, allow: bool) -> Result<()> {
        let wrap = |source| Error::Database(DbError::Connect { target: self.name.clone(), source });
        let mut admin = PgConnection::connect_with(&self.admin).await.map_err(wrap)?;
        let statement = format!("alter database {} allow_connections {allow}", quote_ident(&self.name));
        sqlx::raw_sql(&statement).execute(&mut admin).await.map_err(wrap)?;
        if !allow {
            sqlx::query(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
            )
            .bind(&self.name)
            .execute(&mut admin)
            .await
            .map_err(wrap)?;
        }
        let _ = admin.close().await;
        Ok(())
    }

    /// The project's configuration (defaults if it has no `forge.toml`) pointed at this database,
    /// with its folders made absolute so a node built from it finds the project's migrations
    /// whatever its working folder.
    pub fn config(&self) -> ForgeConfig {
        let root = project_root();
        let mut config = ForgeConfig::load_or_default(root.join("forge.toml")).unwrap_or_default();
        config.database.url = Some(self.url.clone());
        config.database.migrations_dir = root.join(&config.database.migrations_dir);
        config.database.embedded_dir = root.join(&config.database.embedded_dir);
        config
    }

    async fn create(server: Server, template: Option<&str>) -> Result<Self> {
        let name = format!("forge_test_{}", uuid::Uuid::new_v4().simple());
        let mut create = format!("create database {}", quote_ident(&name));
        if let Some(template) = template {
            create.push_str(&format!(" template {}", quote_ident(template)));
        }
        let mut conn = server.admin_connection().await?;
        // Cloning fails with 55006 while another session is connected to the template: retry.
        let mut tries = 0;
        loop {
            match sqlx::raw_sql(&create).execute(&mut conn).await {
                Ok(_) => break,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55006") && tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(source) => return Err(server.error(source)),
            }
        }
        let _ = conn.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(server.options.clone().database(&name))
            .await
            .map_err(|source| server.error(source))?;
        let url = server.url_for(&name);
        Ok(Self { name, url, pool, read_db: OnceLock::new(), admin: server.admin_options() })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("forge::testing: kept database {} of the failed test: {}", self.name, self.url);
            return;
        }
        let admin = self.admin.clone();
        let drop_sql = format!("drop database if exists {} with (force)", quote_ident(&self.name));
        // Drop cannot await; a short-lived thread with its own runtime does the work.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect_with(&admin).await.ok()?;
                sqlx::raw_sql(&drop_sql).execute(&mut conn).await.ok()?;
                conn.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("forge::testing: could not drop database {}", self.name);
        }
    }
}

/// The server tests run on.
struct Server {
    /// Options for the server, database unset.
    options: PgConnectOptions,
    /// How to write a URL for a database on it.
    url_base: UrlBase,
}

enum UrlBase {
    Url(String),
    Embedded { socket_dir: PathBuf },
}

impl Server {
    async fn resolve() -> Result<Self> {
        let root = project_root();
        let config = ForgeConfig::load_or_default(root.join("forge.toml"))?;
        if let Some(url) = &config.database.url {
            let options = PgConnectOptions::from_str(url)
                .map_err(|source| DbError::InvalidUrl { url: crate::db::redact_url(url), source })?;
            return Ok(Self { options, url_base: UrlBase::Url(url.clone()) });
        }
        let dir = config.database.embedded_dir;
        let dir = if dir.is_absolute() { dir } else { root.join(dir) };
        let started = tokio::task::spawn_blocking(move || start_embedded(dir))
            .await
            .map_err(|e| Error::Setting { key: "database.embedded_dir", message: e.to_string() })?;
        let socket_dir = started.map_err(|message| Error::Setting { key: "database.embedded_dir", message })?;
        let options = PgConnectOptions::new().socket(&socket_dir).port(5432).username(crate::db::EMBEDDED_USER);
        Ok(Self { options, url_base: UrlBase::Embedded { socket_dir } })
    }

    fn admin_options(&self) -> PgConnectOptions {
        self.options.clone().database("postgres")
    }

    async fn admin_connection(&self) -> Result<PgConnection> {
        PgConnection::connect_with(&self.admin_options()).await.map_err(|source| self.error(source))
    }

    fn url_for(&self, database: &str) -> String {
        match &self.url_base {
            UrlBase::Url(url) => url_with_database(url, database),
            UrlBase::Embedded { socket_dir } => {
                format!(
                    "postgres://{}@localhost:5432/{database}?host={}",
                    crate::db::EMBEDDED_USER,
                    socket_dir.display()
                )
            }
        }
    }

    fn error(&self, source: sqlx::Error) -> Error {
        let target = match &self.url_base {
            UrlBase::Url(url) => crate::db::redact_url(url),
            UrlBase::Embedded { socket_dir } => {
                format!("embedded PostgreSQL in {}", socket_dir.display())
            }
        };
        Error::Database(DbError::Connect { target, source })
    }
}

/// Starts (or joins) the embedded cluster once per process and returns its socket folder.
fn start_embedded(dir: PathBuf) -> std::result::Result<PathBuf, String> {
    let started = EMBEDDED_STARTED.get_or_init(|| {
        let cluster = EmbeddedPostgres::start(&dir).map_err(|e| e.to_string())?;
        let mut slot = EMBEDDED.lock().map_err(|e| e.to_string())?;
        *slot = Some(cluster);
        // SAFETY: `stop_embedded_at_exit` is an `extern "C" fn()` that does not unwind.
        unsafe { libc::atexit(stop_embedded_at_exit) };
        Ok(())
    });
    started.clone()?;
    let slot = EMBEDDED.lock().map_err(|e| e.to_string())?;
    slot.as_ref().map(|c| c.dir().to_owned()).ok_or_else(|| "the embedded cluster was already stopped".to_owned())
}

extern "C" fn stop_embedded_at_exit() {
    let cluster = EMBEDDED.lock().ok().and_then(|mut slot| slot.take());
    if let Some(cluster) = cluster {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(cluster)));
    }
}

/// Makes sure `template` exists on `server` with `migrator`'s migrations applied. Processes
/// racing to build it take turns on an advisory lock; a template left half-built by a crashed
/// process is rebuilt.
async fn ensure_template(server: &Server, template: &str, migrator: &Migrator) -> Result<()> {
    if TEMPLATES.lock().ok().is_some_and(|t| t.as_ref().is_some_and(|t| t.contains(template))) {
        return Ok(());
    }
    let mut conn = server.admin_connection().await?;
    let result = async {
        sqlx::query("select pg_advisory_lock(hashtext('forge_test_template'))").execute(&mut conn).await?;
        let state: Option<bool> = sqlx::query_scalar("select datistemplate from pg_database where datname = $1")
            .bind(template)
            .fetch_optional(&mut conn)
            .await?;
        if state == Some(true) {
            return Ok::<bool, sqlx::Error>(false);
        }
        if state == Some(false) {
            sqlx::raw_sql(&format!("drop database {} with (force)", quote_ident(template))).execute(&mut conn).await?;
        }
        sqlx::raw_sql(&format!("create database {}", quote_ident(template))).execute(&mut conn).await?;
        Ok(true)
    }
    .await;
    let build = match result {
        Ok(build) => build,
        Err(source) => return Err(server.error(source)),
    };
    if build {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(server.options.clone().database(template))
            .await
            .map_err(|source| server.error(source))?;
        let migrated = migrator.run(&pool).await;
        pool.close().await;
        migrated?;
        let seal = format!("alter database {} with is_template true allow_connections false", quote_ident(template));
        sqlx::raw_sql(&seal).execute(&mut conn).await.map_err(|source| server.error(source))?;
    }
    let _ = sqlx::query("select pg_advisory_unlock(hashtext('forge_test_template'))").execute(&mut conn).await;
    let _ = conn.close().await;
    if let Ok(mut known) = TEMPLATES.lock() {
        known.get_or_insert_with(HashSet::new).insert(template.to_owned());
    }
    Ok(())
}

/// The nearest ancestor of the current folder holding a `forge.toml`, else the current folder.
pub fn project_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors().find(|dir| dir.join("forge.toml").is_file()).map(Path::to_path_buf).unwrap_or(cwd)
}

/// `url` with its database (the path) replaced by `database`.
fn url_with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_in_url_is_replaced() {
        assert_eq!(url_with_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
        assert_eq!(url_with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(url_with_database("postgres://u@h/db?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
    }
}
