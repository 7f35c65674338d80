//! A fresh PostgreSQL database per test, with every migration applied.
//!
//! [`TestDatabase::new`] clones a template database that was migrated once per server and per
//! set of migrations, so a test pays for a `CREATE DATABASE … TEMPLATE …` (tens of
//! milliseconds), not for running migrations. Tests run in parallel, each in its own database;
//! a passing test's database is dropped when the [`TestDatabase`] is dropped, a failing test's
//! is kept and its name printed, so you can look inside.
//!
//! The server is `DATABASE_URL` (or `[database] url` in the project's `forge.toml`) when set,
//! and otherwise the project's embedded cluster, started on first use and stopped when the test
//! process exits (unless another process still uses it). The project folder is the nearest
//! ancestor of the current folder that holds a `forge.toml`; the application's own migrations
//! come from its `[database] migrations_dir`.
//!
//! For jobs: [`TestDatabase::assert_enqueued`] / [`TestDatabase::refute_enqueued`] look for
//! live jobs of a kind whose arguments contain a JSON subset; [`TestDatabase::perform_job`] runs
//! one attempt in-process through the worker's own executor and outcome policy; [`TestDatabase::drain_queue`] runs a queue to
//! empty with the real worker.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use forge_runtime::testing::TestDatabase;
//!
//! let db = TestDatabase::new().await?;
//! let n: i64 = sqlx::query_scalar("select count(*) from forge_jobs").fetch_one(db.pool()).await?;
//! assert_eq!(n, 0);
//! # Ok(()) }
//! ```

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
use crate::jobs::completer;
use crate::jobs::worker::outcome;
use crate::jobs::worker::{Attempt, ClaimedJob, Worker, WorkerSettings};
use crate::jobs::{Job, JobError, JobRegistry, JobState, Notifier};

mod functions;

pub use functions::TestCaller;

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
    read_pool: OnceLock<PgPool>,
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
        Ok(Self { name, url, pool, read_pool: OnceLock::new(), admin: server.admin_options() })
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

/// How [`TestDatabase::drain_queue`] left the jobs it ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Jobs that completed.
    pub completed: u64,
    /// Jobs that failed and wait for a retry.
    pub retryable: u64,
    /// Jobs that were discarded.
    pub discarded: u64,
    /// Jobs that were cancelled.
    pub cancelled: u64,
}

impl TestDatabase {
    /// Panics unless a live job (scheduled, available, running or retryable) of kind `J` exists
    /// whose arguments contain `args` (JSON containment: `{}` matches any).
    pub async fn assert_enqueued<J: Job>(&self, args: serde_json::Value) {
        let found = self.enqueued::<J>(&args).await;
        assert!(found > 0, "expected a live {} job with args containing {args}; found none", J::NAME);
    }

    /// Panics if a live job of kind `J` exists whose arguments contain `args`.
    pub async fn refute_enqueued<J: Job>(&self, args: serde_json::Value) {
        let found = self.enqueued::<J>(&args).await;
        assert!(found == 0, "expected no live {} job with args containing {args}; found {found}", J::NAME);
    }

    async fn enqueued<J: Job>(&self, args: &serde_json::Value) -> i64 {
        sqlx::query_scalar(
            "select count(*) from forge_jobs where kind = $1 and args @> $2 \
             and state in ('scheduled', 'available', 'running', 'retryable')",
        )
        .bind(J::NAME)
        .bind(args)
        .fetch_one(&self.pool)
        .await
        .unwrap_or_else(|e| panic!("cannot look for {} jobs: {e}", J::NAME))
    }

    /// Runs `J`'s handler once, in this process, as attempt 1 of a job row inserted for it: see
    /// [`TestDatabase::perform_attempt`].
    pub async fn perform_job<J: Job>(&self, args: J::Args) -> std::result::Result<J::Output, JobError> {
        self.perform_attempt::<J>(args, 1).await
    }

    /// Runs `J`'s handler once, in this process, as attempt `attempt` of a job row inserted for
    /// it (so `ctx.is_last_attempt()` paths can be tested), through the worker's own executor and
    /// outcome policy, and returns the handler's result. The row ends as a worker would leave
    /// it: completed, retryable (with its backoff), discarded, cancelled, or scheduled when the
    /// handler snoozed. A transactional job's transaction commits only on success, with the
    /// job's completion.
    pub async fn perform_attempt<J: Job>(
        &self,
        args: J::Args,
        attempt: u32,
    ) -> std::result::Result<J::Output, JobError> {
        let options = J::options();
        let json = serde_json::to_value(&args).map_err(|e| JobError::permanent(e.to_string()))?;
        let attempt = i32::try_from(attempt.max(1)).unwrap_or(i32::MAX);
        let max_attempts = i32::try_from(options.max_attempts).unwrap_or(i32::MAX).max(attempt);
        let job: ClaimedJob = sqlx::query_as(
            "insert into forge_jobs (kind, queue, args, state, attempt, max_attempts, attempted_at, heartbeat_at, attempted_by) \
             values ($1, $2, $3, 'running', $4, $5, now(), now(), 'perform_job') \
             returning id, kind, args, attempt, max_attempts, queue, run_at, metadata",
        )
        .bind(J::NAME)
        .bind(options.queue)
        .bind(&json)
        .bind(attempt)
        .bind(max_attempts)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| JobError::permanent(format!("cannot insert the job: {e}")))?;
        let started_at = chrono::Utc::now();
        let run = Attempt {
            pool: &self.pool,
            node_id: "perform_job",
            notifier: None,
            job: &job,
            options: &options,
            token: Default::default(),
        };
        let ended = run.run(|ctx| async move { J::run(&ctx, args).await }).await;
        let (ended, result) = ended.split();
        if let Some(outcome) = outcome::decide(&job, ended, options.backoff, started_at, "perform_job") {
            completer::finish(&self.pool, std::slice::from_ref(&outcome))
                .await
                .map_err(|e| JobError::permanent(format!("cannot record the attempt's outcome: {e}")))?;
        }
        result
    }

    /// Runs every available job of `queue` to completion in this process, one at a time, with
    /// the real worker (claims, retries, timeouts), until none is available or running. Due
    /// scheduled jobs and due retries are promoted as they come due; jobs whose `run_at` is still
    /// ahead are left. Returns how the jobs it ran ended.
    pub async fn drain_queue(&self, queue: &str) -> Drained {
        let started = chrono::Utc::now();
        let capabilities: Vec<String> = sqlx::query_scalar(
            "select distinct capability from forge_jobs where queue = $1 and capability is not null",
        )
        .bind(queue)
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default();
        let notifier = Notifier::spawn(self.pool.clone());
        let worker = Worker::spawn(
            self.pool.clone(),
            JobRegistry::collect(&[]),
            notifier,
            crate::observability::Telemetry::new("drain_queue", 1),
            WorkerSettings {
                node_id: "drain_queue".to_owned(),
                queues: vec![(queue.to_owned(), 1)],
                capabilities,
                poll_interval: Duration::from_millis(10),
                lease: Duration::from_secs(30),
                shutdown_timeout: Duration::from_secs(30),
                listen: true,
            },
        );
        loop {
            // Due retries and scheduled jobs join in, as maintenance would promote them.
            let _ = sqlx::query(
                "update forge_jobs set state = 'available' \
                 where queue = $1 and state in ('scheduled', 'retryable') and run_at <= now()",
            )
            .bind(queue)
            .execute(&self.pool)
            .await;
            let busy: i64 = sqlx::query_scalar(
                "select count(*) from forge_jobs where queue = $1 \
                 and (state = 'running' or (state = 'available' and run_at <= now()))",
            )
            .bind(queue)
            .fetch_one(&self.pool)
            .await
            .unwrap_or(0);
            if busy == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        worker.stop().await;
        let rows: Vec<(JobState, i64)> = sqlx::query_as(
            "select state, count(*) from forge_jobs where queue = $1 and attempted_at >= $2 group by state",
        )
        .bind(queue)
        .bind(started)
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default();
        let mut drained = Drained::default();
        for (state, n) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            match state {
                JobState::Completed => drained.completed += n,
                JobState::Retryable => drained.retryable += n,
                JobState::Discarded => drained.discarded += n,
                JobState::Cancelled => drained.cancelled += n,
                _ => {}
            }
        }
        drained
    }
}
