//! Schema migrations: Forge's own (embedded in the binary from the repository's `migrations/`)
//! followed by the application's (read from its `migrations/` folder at start-up).
//!
//! A migration is a file `NNNN_name.sql` with an `-- @up` section and an optional `-- @down`
//! section. [`Migrator::run`] applies every pending migration in one transaction that first
//! takes a transaction-scoped advisory lock, so nodes starting together apply each migration
//! once: the second waits for the first and then finds nothing to do. Each applied migration
//! is recorded in `forge_migrations` with a SHA-256 checksum of its file; a recorded migration
//! whose file has changed since is refused with [`MigrationError::Changed`] (ship a new
//! migration instead of editing one).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Row};

use super::sql;

#[derive(RustEmbed)]
#[folder = "../../migrations"]
#[include = "*.sql"]
struct ForgeMigrations;

/// Whose migration it is. Forge's run before the application's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MigrationSource {
    /// Forge's own schema.
    Forge,
    /// The application's `migrations/` folder.
    App,
}

impl MigrationSource {
    /// The value stored in `forge_migrations.source`.
    pub const fn as_str(self) -> &'static str {
        match self {
            MigrationSource::Forge => "forge",
            MigrationSource::App => "app",
        }
    }
}

impl fmt::Display for MigrationSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed migration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    /// Forge's or the application's.
    pub source: MigrationSource,
    /// The number the file name starts with.
    pub version: i64,
    /// The rest of the file name, without `.sql`.
    pub name: String,
    /// The `-- @up` section.
    pub up: String,
    /// The `-- @down` section, if the file has one.
    pub down: Option<String>,
    /// Hex SHA-256 of the file (line endings normalised to `\n`).
    pub checksum: String,
}

impl Migration {
    /// Parses the file `file_name` with contents `text`.
    pub fn parse(source: MigrationSource, file_name: &str, text: &str) -> Result<Self, MigrationError> {
        let bad = |reason: String| MigrationError::Invalid { file: file_name.to_owned(), reason };
        let stem = file_name.strip_suffix(".sql").ok_or_else(|| bad("the file name must end in .sql".to_owned()))?;
        let (number, name) =
            stem.split_once('_').ok_or_else(|| bad("the file name must look like 0001_create_users.sql".to_owned()))?;
        let version: i64 = number
            .parse()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| bad(format!("{number:?} is not a positive migration number")))?;
        if name.is_empty() {
            return Err(bad("the file name needs a name after the number, as in 0001_create_users.sql".to_owned()));
        }

        let normalised = text.replace("\r\n", "\n");
        let checksum = Sha256::digest(normalised.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let (mut up, mut down) = (None::<String>, None::<String>);
        let mut in_up = None::<bool>;
        for line in normalised.lines() {
            let section = match line.trim() {
                "-- @up" => {
                    if up.replace(String::new()).is_some() {
                        return Err(bad("more than one `-- @up` section".to_owned()));
                    }
                    in_up = Some(true);
                    continue;
                }
                "-- @down" => {
                    if down.replace(String::new()).is_some() {
                        return Err(bad("more than one `-- @down` section".to_owned()));
                    }
                    in_up = Some(false);
                    continue;
                }
                _ => match in_up {
                    Some(true) => up.as_mut(),
                    Some(false) => down.as_mut(),
                    None => None,
                },
            };
            match section {
                Some(section) => {
                    section.push_str(line);
                    section.push('\n');
                }
                None if line.trim().is_empty() || line.trim_start().starts_with("--") => {}
                None => return Err(bad("SQL before the `-- @up` line".to_owned())),
            }
        }
        let up =
            up.filter(|s| !s.trim().is_empty()).ok_or_else(|| bad("no `-- @up` section, or it is empty".to_owned()))?;
        let down = down.filter(|s| !s.trim().is_empty());
        Ok(Self { source, version, name: name.to_owned(), up, down, checksum })
    }

    /// `forge/0001_jobs` or `app/0003_add_index`: how the migration is named in messages.
    pub fn label(&self) -> String {
        format!("{}/{:04}_{}", self.source, self.version, self.name)
    }
}

/// A migration as recorded in `forge_migrations`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedMigration {
    /// Forge's or the application's.
    pub source: MigrationSource,
    /// Its number.
    pub version: i64,
    /// Its name.
    pub name: String,
    /// The checksum recorded when it was applied.
    pub checksum: String,
    /// When it was applied.
    pub applied_at: chrono::DateTime<chrono::Utc>,
}

/// How a database compares with a [`Migrator`]'s migrations ([`Migrator::check`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum SchemaCheck {
    /// Every migration is applied, with the checksum its file has now.
    Current,
    /// These migrations (labels) are not applied yet: `forge migrate up` applies them.
    Pending(Vec<String>),
    /// An applied migration's file was edited since ([`MigrationError::Changed`]).
    Changed(MigrationError),
}

/// One row of [`Migrator::status`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct MigrationStatus {
    /// `forge/0003_cluster`, `app/0001_init`.
    #[serde(rename = "migration")]
    pub label: String,
    /// Forge's or the application's.
    #[serde(skip)]
    pub source: MigrationSource,
    /// Its number.
    #[serde(skip)]
    pub version: i64,
    /// When it was applied, if it was.
    pub applied_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Its state.
    pub state: MigrationState,
}

/// The state of one migration in [`Migrator::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    /// Applied, and its file is as it was then.
    Applied,
    /// Not applied yet.
    Pending,
    /// Applied, but its file has been edited since.
    Changed,
    /// Recorded as applied, but no file (or embedded migration) has its number any more.
    Missing,
}

impl MigrationState {
    /// `applied`, `pending`, `changed`, `missing`.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationState::Applied => "applied",
            MigrationState::Pending => "pending",
            MigrationState::Changed => "changed",
            MigrationState::Missing => "missing",
        }
    }
}

/// Why migrations could not be read or applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// A migration file is malformed.
    #[error("migration {file}: {reason}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The application's migrations folder could not be read.
    #[error("cannot read migrations folder {}: {source}", dir.display())]
    Io {
        /// The folder.
        dir: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Two files share a number.
    #[error("migrations {first} and {second} share a number")]
    Duplicate {
        /// One file.
        first: String,
        /// The other.
        second: String,
    },
    /// An applied migration's file has changed since it was applied.
    #[error(
        "migration {label} has been edited since it was applied (checksum {applied} then, {current} now); \
         applied migrations must not be edited: restore its file as it was (e.g. `git checkout` it) \
         and make the change in a new migration (`forge migrate new NAME`)"
    )]
    Changed {
        /// The migration.
        label: String,
        /// The checksum recorded when it was applied.
        applied: String,
        /// The checksum of the file now.
        current: String,
    },
    /// A migration's SQL failed; nothing from this run was kept.
    #[error("migration {label} failed, nothing was applied: {source}")]
    Failed {
        /// The migration.
        label: String,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// A migration waited longer than the lock timeout for a table lock (a long-running
    /// transaction holds a table it changes); nothing from this run was kept.
    #[error(
        "migration {label} waited more than {timeout:?} for a lock (a long-running transaction holds a table it changes); \
         nothing was applied: run it again once that transaction ends, or raise [database] migration_lock_timeout"
    )]
    LockTimeout {
        /// The migration.
        label: String,
        /// The lock timeout it ran with.
        timeout: std::time::Duration,
    },
    /// A migration to roll back has no `-- @down` section.
    #[error("migration {label} has no `-- @down` section and cannot be rolled back")]
    Irreversible {
        /// The migration.
        label: String,
    },
    /// The database failed outside a migration's own SQL.
    #[error("database error while migrating: {0}")]
    Database(#[from] sqlx::Error),
}

/// The migrations a node knows, in the order they apply.
#[derive(Clone, Debug)]
pub struct Migrator {
    migrations: Vec<Migration>,
    lock_timeout: std::time::Duration,
}

/// How long a migration waits for a lock unless told otherwise.
const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Migrator {
    /// Forge's own migrations only.
    pub fn forge() -> Result<Self, MigrationError> {
        let mut files: Vec<(String, String)> = ForgeMigrations::iter()
            .filter_map(|name| {
                let file = ForgeMigrations::get(&name)?;
                Some((name.into_owned(), String::from_utf8_lossy(&file.data).into_owned()))
            })
            .collect();
        files.sort();
        let migrations = parse_all(MigrationSource::Forge, files)?;
        Ok(Self { migrations, lock_timeout: DEFAULT_LOCK_TIMEOUT })
    }

    /// Forge's migrations followed by the `.sql` files in `dir`. A missing folder adds nothing.
    pub fn with_app_dir(dir: impl AsRef<Path>) -> Result<Self, MigrationError> {
        let mut migrator = Self::forge()?;
        let dir = dir.as_ref();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(migrator),
            Err(source) => {
                return Err(MigrationError::Io { dir: dir.to_owned(), source });
            }
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| MigrationError::Io { dir: dir.to_owned(), source })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".sql") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path())
                .map_err(|source| MigrationError::Io { dir: entry.path(), source })?;
            files.push((name, text));
        }
        files.sort();
        migrator.migrations.extend(parse_all(MigrationSource::App, files)?);
        Ok(migrator)
    }

    /// The migrations, in the order they apply.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// A digest of every migration's checksum: two migrators with equal fingerprints build the
    /// same schema.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        for m in &self.migrations {
            hasher.update(m.label().as_bytes());
            hasher.update(m.checksum.as_bytes());
        }
        hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// Sets how long a migration may wait for a lock (`[database] migration_lock_timeout`,
    /// default 10 s). Past it the run fails with [`MigrationError::LockTimeout`] and nothing is
    /// applied, rather than an `ALTER TABLE` queueing every query on its table behind a long
    /// transaction.
    #[must_use]
    pub fn with_lock_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The error for `source`, raised by `migration`'s SQL.
    fn failed(&self, label: String, source: sqlx::Error) -> MigrationError {
        let lock_timeout = matches!(&source, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"));
        if lock_timeout {
            return MigrationError::LockTimeout { label, timeout: self.lock_timeout };
        }
        MigrationError::Failed { label, source }
    }

    /// Applies every pending migration, in one transaction under an advisory lock. Returns the
    /// ones this call applied (empty when another node got there first).
    pub async fn run(&self, pool: &PgPool) -> Result<Vec<Migration>, MigrationError> {
        let mut tx = pool.begin().await?;
        let by_key = self.lock_ledger(&mut tx).await?;

        let mut done = Vec::new();
        for migration in &self.migrations {
            if by_key.contains_key(&(migration.source, migration.version)) {
                continue;
            }
            let started = Instant::now();
            sqlx::raw_sql(&migration.up)
                .execute(&mut *tx)
                .await
                .map_err(|source| self.failed(migration.label(), source))?;
            let millis = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            sqlx::query(sql::RECORD_MIGRATION)
                .bind(migration.source.as_str())
                .bind(migration.version)
                .bind(&migration.name)
                .bind(&migration.checksum)
                .bind(millis)
                .execute(&mut *tx)
                .await?;
            tracing::info!(migration = %migration.label(), millis, "applied migration");
            done.push(migration.clone());
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Rolls back the last `n` applied migrations (the application's before Forge's), newest
    /// first, in one transaction under the migration lock. Returns those rolled back.
    pub async fn down(&self, pool: &PgPool, n: usize) -> Result<Vec<Migration>, MigrationError> {
        let mut tx = pool.begin().await?;
        let by_key = self.lock_ledger(&mut tx).await?;

        let mut done = Vec::new();
        for migration in self.migrations.iter().rev().filter(|m| by_key.contains_key(&(m.source, m.version))).take(n) {
            let down =
                migration.down.as_ref().ok_or_else(|| MigrationError::Irreversible { label: migration.label() })?;
            sqlx::raw_sql(down).execute(&mut *tx).await.map_err(|source| self.failed(migration.label(), source))?;
            sqlx::query(sql::FORGET_MIGRATION)
                .bind(migration.source.as_str())
                .bind(migration.version)
                .execute(&mut *tx)
                .await?;
            tracing::info!(migration = %migration.label(), "rolled back migration");
            done.push(migration.clone());
        }
        tx.commit().await?;
        Ok(done)
    }

    /// The migrations recorded in the database (none if the ledger does not exist yet).
    pub async fn applied(&self, pool: &PgPool) -> Result<Vec<AppliedMigration>, MigrationError> {
        let mut conn = pool.acquire().await?;
        let exists: bool = sqlx::query_scalar(sql::LEDGER_EXISTS).fetch_one(&mut *conn).await?;
        if !exists {
            return Ok(Vec::new());
        }
        applied(&mut conn).await
    }

    /// `None` when every known migration is applied with its current checksum; otherwise why not,
    /// in a sentence fit for `/ready`.
    pub async fn pending_reason(&self, pool: &PgPool) -> Result<Option<String>, MigrationError> {
        Ok(match self.check(pool).await? {
            SchemaCheck::Current => None,
            SchemaCheck::Pending(pending) => Some(format!("migrations not applied: {}", pending.join(", "))),
            SchemaCheck::Changed(e) => Some(e.to_string()),
        })
    }

    /// How the database compares with these migrations: current, some not applied yet, or an
    /// applied one edited since.
    pub async fn check(&self, pool: &PgPool) -> Result<SchemaCheck, MigrationError> {
        let applied = self.applied(pool).await?;
        let by_key: HashMap<(MigrationSource, i64), &AppliedMigration> =
            applied.iter().map(|a| ((a.source, a.version), a)).collect();
        if let Err(e) = self.verify(&by_key) {
            return Ok(SchemaCheck::Changed(e));
        }
        let pending: Vec<String> = self
            .migrations
            .iter()
            .filter(|m| !by_key.contains_key(&(m.source, m.version)))
            .map(Migration::label)
            .collect();
        Ok(if pending.is_empty() { SchemaCheck::Current } else { SchemaCheck::Pending(pending) })
    }

    /// Every migration known here or recorded in the database, in order, with its state:
    /// what `forge migrate status` prints.
    pub async fn status(&self, pool: &PgPool) -> Result<Vec<MigrationStatus>, MigrationError> {
        let applied = self.applied(pool).await?;
        let mut rows: Vec<MigrationStatus> = self
            .migrations
            .iter()
            .map(|m| {
                let a = applied.iter().find(|a| a.source == m.source && a.version == m.version);
                MigrationStatus {
                    label: m.label(),
                    source: m.source,
                    version: m.version,
                    applied_at: a.map(|a| a.applied_at),
                    state: match a {
                        None => MigrationState::Pending,
                        Some(a) if a.checksum != m.checksum => MigrationState::Changed,
                        Some(_) => MigrationState::Applied,
                    },
                }
            })
            .collect();
        for a in &applied {
            if !self.migrations.iter().any(|m| m.source == a.source && m.version == a.version) {
                rows.push(MigrationStatus {
                    label: format!("{}/{:04}_{}", a.source.as_str(), a.version, a.name),
                    source: a.source,
                    version: a.version,
                    applied_at: Some(a.applied_at),
                    state: MigrationState::Missing,
                });
            }
        }
        rows.sort_by_key(|r| (r.source != MigrationSource::Forge, r.version));
        Ok(rows)
    }

    /// Takes the migration lock for the rest of the transaction, makes sure the ledger exists,
    /// and returns what it records, after checking every applied migration's checksum.
    async fn lock_ledger(
        &self,
        tx: &mut PgConnection,
    ) -> Result<HashMap<(MigrationSource, i64), AppliedMigration>, MigrationError> {
        sqlx::query(sql::MIGRATION_LOCK).execute(&mut *tx).await?;
        // After the migration lock (which waits for another node's run as long as it takes):
        // every lock the migrations take is bounded.
        let millis = u64::try_from(self.lock_timeout.as_millis()).unwrap_or(u64::MAX).max(1);
        sqlx::query(sql::SET_LOCK_TIMEOUT).bind(format!("{millis}ms")).execute(&mut *tx).await?;
        // `create … if not exists` tells of what exists at every start ("already exists,
        // skipping"): only warnings and errors are worth a log line.
        sqlx::query(sql::QUIET_NOTICES).execute(&mut *tx).await?;
        sqlx::raw_sql(sql::CREATE_LEDGER).execute(&mut *tx).await?;
        let by_key: HashMap<_, _> = applied(tx).await?.into_iter().map(|a| ((a.source, a.version), a)).collect();
        self.verify(&by_key.iter().map(|(k, v)| (*k, v)).collect())?;
        Ok(by_key)
    }

    fn verify(&self, applied: &HashMap<(MigrationSource, i64), &AppliedMigration>) -> Result<(), MigrationError> {
        for migration in &self.migrations {
            if let Some(a) = applied.get(&(migration.source, migration.version))
                && a.checksum != migration.checksum
            {
                return Err(MigrationError::Changed {
                    label: migration.label(),
                    applied: a.checksum.clone(),
                    current: migration.checksum.clone(),
                });
            }
        }
        Ok(())
    }
}

fn parse_all(source: MigrationSource, files: Vec<(String, String)>) -> Result<Vec<Migration>, MigrationError> {
    let mut migrations: Vec<(String, Migration)> = Vec::with_capacity(files.len());
    for (name, text) in files {
        let migration = Migration::parse(source, &name, &text)?;
        if let Some((first, _)) = migrations.iter().find(|(_, m)| m.version == migration.version) {
            return Err(MigrationError::Duplicate { first: first.clone(), second: name });
        }
        migrations.push((name, migration));
    }
    migrations.sort_by_key(|(_, m)| m.version);
    Ok(migrations.into_iter().map(|(_, m)| m).collect())
}

async fn applied(conn: &mut PgConnection) -> Result<Vec<AppliedMigration>, MigrationError> {
    let rows = sqlx::query(sql::APPLIED_MIGRATIONS).fetch_all(conn).await?;
    rows.into_iter()
        .map(|row| {
            let source = match row.try_get::<String, _>("source")?.as_str() {
                "forge" => MigrationSource::Forge,
                _ => MigrationSource::App,
            };
            Ok(AppliedMigration {
                source,
                version: row.try_get("version")?,
                name: row.try_get("name")?,
                checksum: row.try_get("checksum")?,
                applied_at: row.try_get("applied_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(MigrationError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_up_and_down_sections() {
        let m = Migration::parse(
            MigrationSource::App,
            "0002_users.sql",
            "-- users table\n-- @up\ncreate table users (id int);\n-- @down\ndrop table users;\n",
        )
        .unwrap();
        assert_eq!((m.version, m.name.as_str()), (2, "users"));
        assert_eq!(m.up.trim(), "create table users (id int);");
        assert_eq!(m.down.as_deref().map(str::trim), Some("drop table users;"));
        assert_eq!(m.checksum.len(), 64);
        assert_eq!(m.label(), "app/0002_users");
    }

    #[test]
    fn checksum_ignores_line_endings_but_not_content() {
        let a = Migration::parse(MigrationSource::App, "1_a.sql", "-- @up\nselect 1;\n").unwrap();
        let b = Migration::parse(MigrationSource::App, "1_a.sql", "-- @up\r\nselect 1;\r\n").unwrap();
        let c = Migration::parse(MigrationSource::App, "1_a.sql", "-- @up\nselect 2;\n").unwrap();
        assert_eq!(a.checksum, b.checksum);
        assert_ne!(a.checksum, c.checksum);
    }

    #[test]
    fn malformed_files_are_refused() {
        for (name, text) in [
            ("users.sql", "-- @up\nselect 1;"),
            ("0001_users.txt", "-- @up\nselect 1;"),
            ("0_users.sql", "-- @up\nselect 1;"),
            ("0001_.sql", "-- @up\nselect 1;"),
            ("0001_x.sql", "select 1;\n-- @up\nselect 1;"),
            ("0001_x.sql", "-- @down\ndrop table x;"),
            ("0001_x.sql", "-- @up\n-- @down\nselect 1;"),
            ("0001_x.sql", "-- @up\nselect 1;\n-- @up\nselect 2;"),
        ] {
            let err = Migration::parse(MigrationSource::App, name, text).expect_err(name);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn forge_migrations_are_embedded_and_ordered() {
        let m = Migrator::forge().unwrap();
        assert!(!m.migrations().is_empty());
        assert!(m.migrations().windows(2).all(|w| w[0].version < w[1].version));
        assert!(m.migrations().iter().all(|m| m.down.is_some()), "every Forge migration can be rolled back");
    }

    #[test]
    fn duplicate_numbers_are_refused() {
        let files = vec![
            ("0001_a.sql".to_owned(), "-- @up\nselect 1;".to_owned()),
            ("0001_b.sql".to_owned(), "-- @up\nselect 1;".to_owned()),
        ];
        assert!(matches!(parse_all(MigrationSource::App, files), Err(MigrationError::Duplicate { .. })));
    }
}
