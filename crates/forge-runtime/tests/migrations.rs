//! Migrations against a real PostgreSQL: concurrency, checksums, ordering, atomicity, rollback.

mod common;

use common::{ledger, migrations_dir, table_exists, with_roles};
use forge_runtime::Forge;
use forge_runtime::config::Role;
use forge_runtime::db::{MigrationError, Migrator};
use forge_runtime::testing::TestDatabase;

const APP_0001: &str = "-- @up\ncreate table widgets (id int primary key);\n-- @down\ndrop table widgets;\n";
/// Fails unless Forge's own migrations ran first.
const APP_0002: &str =
    "-- @up\ncreate view widget_jobs as select id, kind from forge_jobs;\n-- @down\ndrop view widget_jobs;\n";

#[tokio::test]
async fn concurrent_migrators_apply_each_migration_once() {
    let db = TestDatabase::empty().await.expect("empty database");
    let dir = migrations_dir(&[("0001_widgets.sql", APP_0001), ("0002_view.sql", APP_0002)]);
    let migrator = Migrator::with_app_dir(dir.path()).expect("migrator");

    // `create table` without `if not exists` fails if it runs twice: both must succeed.
    let (a, b) = tokio::join!(migrator.run(db.pool()), migrator.run(db.pool()));
    let (a, b) = (a.expect("first migrator"), b.expect("second migrator"));
    assert_eq!(a.len() + b.len(), migrator.migrations().len(), "each migration applied by exactly one caller");
    assert!(a.is_empty() || b.is_empty(), "one caller applied everything, the other found nothing to do");

    let rows = ledger(db.pool()).await;
    assert_eq!(rows.len(), migrator.migrations().len());
    assert!(rows.iter().all(|(_, n)| *n == 1), "{rows:?}");
}

#[tokio::test]
async fn two_runtimes_starting_together_on_an_empty_database_both_come_up() {
    let db = TestDatabase::empty().await.expect("empty database");
    let dir = migrations_dir(&[("0001_widgets.sql", APP_0001)]);
    let mut config = with_roles(db.config(), &[Role::Worker]);
    config.database.migrations_dir = dir.path().to_owned();

    let build = || Forge::builder().config(config.clone()).project_dir(dir.path()).build().expect("build");
    let (a, b) = tokio::join!(build().start(), build().start());
    let (a, b) = (a.expect("first node starts"), b.expect("second node starts"));

    let expected = Migrator::with_app_dir(dir.path()).expect("migrator").migrations().len();
    let rows = ledger(db.pool()).await;
    assert_eq!(rows.len(), expected, "{rows:?}");
    assert!(rows.iter().all(|(_, n)| *n == 1), "{rows:?}");
    assert!(table_exists(db.pool(), "forge_jobs").await);
    assert!(table_exists(db.pool(), "widgets").await);
    a.stop().await.expect("stop a");
    b.stop().await.expect("stop b");
}

#[tokio::test]
async fn a_changed_applied_migration_is_refused() {
    let db = TestDatabase::empty().await.expect("empty database");
    let dir = migrations_dir(&[("0001_widgets.sql", APP_0001)]);
    Migrator::with_app_dir(dir.path()).expect("migrator").run(db.pool()).await.expect("first run");

    std::fs::write(dir.path().join("0001_widgets.sql"), APP_0001.replace("int primary key", "bigint primary key"))
        .expect("edit migration");
    let edited = Migrator::with_app_dir(dir.path()).expect("migrator");
    let err = edited.run(db.pool()).await.expect_err("an edited migration is refused");
    assert!(matches!(&err, MigrationError::Changed { label, .. } if label == "app/0001_widgets"), "{err}");
    assert!(err.to_string().contains("must not be edited"), "{err}");

    // A node refuses to start on it too, and /ready would say so.
    let mut config = with_roles(db.config(), &[Role::Worker]);
    config.database.migrations_dir = dir.path().to_owned();
    let err = Forge::builder().config(config).build().expect("build").start().await.expect_err("refused");
    assert!(err.to_string().contains("app/0001_widgets"), "{err}");
    let reason = edited.pending_reason(db.pool()).await.expect("reason").expect("not ready");
    assert!(reason.contains("app/0001_widgets"), "{reason}");
}

#[tokio::test]
async fn app_migrations_run_after_forge_migrations() {
    let db = TestDatabase::empty().await.expect("empty database");
    // 0001 sorts before Forge's later migrations by number, yet needs forge_jobs to exist.
    let dir = migrations_dir(&[("0001_view.sql", APP_0002)]);
    let migrator = Migrator::with_app_dir(dir.path()).expect("migrator");
    let applied = migrator.run(db.pool()).await.expect("migrations apply in order");
    let labels: Vec<String> = applied.iter().map(|m| m.label()).collect();
    assert_eq!(labels.last().map(String::as_str), Some("app/0001_view"), "{labels:?}");
    assert!(labels[..labels.len() - 1].iter().all(|l| l.starts_with("forge/")), "{labels:?}");
}

#[tokio::test]
async fn a_failing_migration_leaves_nothing_behind() {
    let db = TestDatabase::empty().await.expect("empty database");
    let dir = migrations_dir(&[("0001_widgets.sql", APP_0001), ("0002_broken.sql", "-- @up\ncreate tabel oops;\n")]);
    let err = Migrator::with_app_dir(dir.path()).expect("migrator").run(db.pool()).await.expect_err("fails");
    assert!(matches!(&err, MigrationError::Failed { label, .. } if label == "app/0002_broken"), "{err}");
    assert!(!table_exists(db.pool(), "widgets").await, "0001 was rolled back with 0002");
    assert!(!table_exists(db.pool(), "forge_jobs").await, "Forge's migrations were rolled back too");
    assert!(!table_exists(db.pool(), "forge_migrations").await, "the ledger itself was rolled back");
}

#[tokio::test]
async fn down_rolls_back_newest_first() {
    let db = TestDatabase::empty().await.expect("empty database");
    let dir = migrations_dir(&[("0001_widgets.sql", APP_0001), ("0002_view.sql", APP_0002)]);
    let migrator = Migrator::with_app_dir(dir.path()).expect("migrator");
    migrator.run(db.pool()).await.expect("up");

    let undone = migrator.down(db.pool(), 1).await.expect("down 1");
    assert_eq!(undone.iter().map(|m| m.label()).collect::<Vec<_>>(), vec!["app/0002_view"]);
    assert!(table_exists(db.pool(), "widgets").await);
    assert!(!table_exists(db.pool(), "widget_jobs").await);

    let total = migrator.migrations().len();
    let undone = migrator.down(db.pool(), total).await.expect("down all");
    assert_eq!(undone.len(), total - 1);
    assert!(!table_exists(db.pool(), "forge_jobs").await);
    assert!(ledger(db.pool()).await.is_empty());

    let reapplied = migrator.run(db.pool()).await.expect("up again");
    assert_eq!(reapplied.len(), total);
}

#[tokio::test]
async fn an_irreversible_migration_is_not_rolled_back() {
    let db = TestDatabase::empty().await.expect("empty database");
    let dir = migrations_dir(&[("0001_once.sql", "-- @up\ncreate table once (id int);\n")]);
    let migrator = Migrator::with_app_dir(dir.path()).expect("migrator");
    migrator.run(db.pool()).await.expect("up");
    let err = migrator.down(db.pool(), 1).await.expect_err("no down section");
    assert!(matches!(err, MigrationError::Irreversible { .. }), "{err}");
    assert!(table_exists(db.pool(), "once").await);
}

#[tokio::test]
async fn test_databases_come_migrated_and_isolated() {
    let (a, b) = tokio::join!(TestDatabase::new(), TestDatabase::new());
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert_ne!(a.name(), b.name());
    sqlx::query("insert into forge_jobs (kind) values ('only_in_a')").execute(a.pool()).await.expect("insert");
    let count = |pool| async move {
        sqlx::query_scalar::<_, i64>("select count(*) from forge_jobs").fetch_one(pool).await.expect("count")
    };
    assert_eq!(count(a.pool()).await, 1);
    assert_eq!(count(b.pool()).await, 0, "b does not see a's rows");
    let pending = Migrator::forge().expect("migrator").pending_reason(a.pool()).await.expect("reason");
    assert_eq!(pending, None, "every Forge migration is applied");

    // Dropping a passing test's database removes it.
    let name = a.name().to_owned();
    drop(a);
    let exists: bool = sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
        .bind(&name)
        .fetch_one(b.pool())
        .await
        .expect("pg_database");
    assert!(!exists, "{name} was dropped");
}

#[tokio::test]
async fn a_migration_that_cannot_get_its_lock_fails_fast_and_applies_nothing() {
    let db = TestDatabase::empty().await.expect("db");
    sqlx::query("create table gadgets (id int)").execute(db.pool()).await.expect("table");
    // A long transaction that has read the table: an ALTER TABLE must wait for it to end.
    let mut reader = db.pool().begin().await.expect("begin");
    sqlx::query("select * from gadgets").execute(&mut *reader).await.expect("read");
    let dir = migrations_dir(&[("0001_alter.sql", "-- @up\nalter table gadgets add column name text;\n")]);
    let migrator =
        Migrator::with_app_dir(dir.path()).expect("migrator").with_lock_timeout(std::time::Duration::from_millis(300));
    let run = tokio::time::timeout(std::time::Duration::from_secs(20), migrator.run(db.pool())).await;
    let err = run.expect("the migration gave up instead of waiting behind the transaction").expect_err("fails");
    assert!(matches!(err, MigrationError::LockTimeout { .. }), "{err:?}");
    assert!(err.to_string().contains("migration_lock_timeout"), "{err}");
    reader.rollback().await.expect("rollback");
    // Once the transaction is gone the same run applies it.
    let applied = migrator.run(db.pool()).await.expect("second run");
    assert_eq!(applied.len(), migrator.migrations().len(), "nothing had been kept from the failed run");
}

/// Counts the server's notices sqlx logs (`sqlx::postgres::notice`).
#[derive(Clone, Default)]
struct Notices(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Notices {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "sqlx::postgres::notice" {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A start on an up-to-date database prints no "relation … already exists, skipping" notice
/// (neither from the migrator's own ledger nor from an application's `if not exists`).
#[tokio::test]
async fn a_second_run_prints_no_already_exists_notice() {
    use tracing_subscriber::layer::SubscriberExt;

    let db = TestDatabase::empty().await.expect("empty database");
    let dir = migrations_dir(&[("0001_widgets.sql", "-- @up\ncreate table if not exists widgets (id int);\n")]);
    let migrator = Migrator::with_app_dir(dir.path()).expect("migrator");
    migrator.run(db.pool()).await.expect("first run");
    sqlx::query("create table if not exists widgets (id int)").execute(db.pool()).await.expect("notice check");
    let notices = Notices::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(notices.clone()));
    // The check above proves notices reach this subscriber: one for the plain statement.
    sqlx::query("create table if not exists widgets (id int)").execute(db.pool()).await.expect("notice check");
    assert_eq!(notices.0.load(std::sync::atomic::Ordering::Relaxed), 1, "the server's notices are not logged");
    migrator.run(db.pool()).await.expect("second run");
    assert_eq!(notices.0.load(std::sync::atomic::Ordering::Relaxed), 1, "the migrator logged a notice");
}

/// The columns of `forge_jobs` with limits, and the domain each has after migration 0019.
const LIMITED: [(&str, &str); 6] = [
    ("state", "forge_job_state"),
    ("kind", "forge_job_kind"),
    ("queue", "forge_queue_name"),
    ("priority", "forge_job_priority"),
    ("attempt", "forge_job_attempt"),
    ("max_attempts", "forge_job_max_attempts"),
];

/// The types of the limited columns, in [`LIMITED`]'s order, and the table's check constraints.
async fn job_limits(pool: &sqlx::PgPool) -> (Vec<String>, i64) {
    let mut types = Vec::new();
    for (column, _) in LIMITED {
        let ty: String = sqlx::query_scalar(
            "select format_type(atttypid, null) from pg_attribute
             where attrelid = 'forge_jobs'::regclass and attname = $1",
        )
        .bind(column)
        .fetch_one(pool)
        .await
        .expect("column type");
        types.push(ty);
    }
    let checks: i64 = sqlx::query_scalar(
        "select count(*) from pg_constraint where conrelid = 'forge_jobs'::regclass and contype = 'c'",
    )
    .fetch_one(pool)
    .await
    .expect("checks");
    (types, checks)
}

/// Every limit of a job's row refuses what it refused as a table check (SQLSTATE 23514), and
/// writes nothing.
async fn assert_job_limits_refuse(pool: &sqlx::PgPool) {
    let insert =
        |columns: &str, values: &str| format!("insert into forge_jobs (kind, {columns}) values ('k', {values})");
    let refused = [
        insert("state", "'bogus'"),
        insert("priority", "5"),
        insert("priority", "-1"),
        insert("attempt", "-1"),
        insert("max_attempts", "0"),
        insert("queue", "''"),
        insert("queue", "repeat('q', 65)"),
        "insert into forge_jobs (kind) values ('')".to_owned(),
        "insert into forge_jobs (kind) values (repeat('k', 256))".to_owned(),
    ];
    for statement in refused {
        let err = sqlx::query(&statement).execute(pool).await.expect_err(&statement);
        let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("23514"), "{statement}: {err}");
    }
    let rows: i64 = sqlx::query_scalar("select count(*) from forge_jobs").fetch_one(pool).await.expect("count");
    assert_eq!(rows, 0, "a refused row was written");
    // The limits' edges are allowed.
    sqlx::query(
        "insert into forge_jobs (kind, queue, state, priority, attempt, max_attempts)
         values (repeat('k', 255), repeat('q', 64), 'cancelled', 4, 0, 1)",
    )
    .execute(pool)
    .await
    .expect("a row at the limits");
    sqlx::query("delete from forge_jobs").execute(pool).await.expect("clean up");
}

/// The limited columns' types while the table keeps its checks, as [`job_limits`] lists them.
fn base_types() -> Vec<String> {
    ["text", "text", "text", "smallint", "integer", "integer"].map(str::to_owned).to_vec()
}

/// The domains of [`LIMITED`], as [`job_limits`] lists the types.
fn domains() -> Vec<String> {
    LIMITED.map(|(_, domain)| domain.to_owned()).to_vec()
}

/// A database migrated up to 0018 (0019 applied and rolled back), its table on its checks.
async fn before_0019() -> (TestDatabase, Migrator) {
    let db = TestDatabase::empty().await.expect("empty database");
    let migrator = Migrator::forge().expect("migrator");
    migrator.run(db.pool()).await.expect("up");
    let undone = migrator.down(db.pool(), 1).await.expect("down 0019");
    assert_eq!(undone.iter().map(|m| m.label()).collect::<Vec<_>>(), ["forge/0019_job_domains"]);
    assert_eq!(job_limits(db.pool()).await, (base_types(), 5));
    (db, migrator)
}

/// Applies the pending migrations; the levels of the server's notices logged meanwhile.
async fn run_logging(migrator: &Migrator, pool: &sqlx::PgPool) -> Vec<tracing::Level> {
    use tracing_subscriber::layer::SubscriberExt;
    let levels = NoticeLevels::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(levels.clone()));
    migrator.run(pool).await.expect("0019");
    levels.0.lock().expect("levels").clone()
}

/// `forge_jobs_use_domains()`'s answer: whether the columns are domains now.
async fn use_domains(pool: &sqlx::PgPool) -> bool {
    sqlx::query_scalar("select forge_jobs_use_domains()").fetch_one(pool).await.expect("forge_jobs_use_domains")
}

/// A job's limits are domains on its columns, not table checks, which Postgres prepares anew
/// for every statement writing the table (a single dispatch's INSERT was an eighth slower with
/// them); they refuse the same values.
#[tokio::test]
async fn a_jobs_limits_are_domains_that_refuse_what_the_table_checks_did() {
    let db = TestDatabase::new().await.expect("database");
    assert_eq!(job_limits(db.pool()).await, (domains(), 0), "no check constraint left on the table");
    assert_job_limits_refuse(db.pool()).await;
}

/// An application's view over the limited columns blocks moving them to domains: migration
/// 0019 then keeps the table's checks (it applies, the limits hold, a warning says why), and
/// `forge_jobs_use_domains()` makes the move once the view is gone; rolling back restores the
/// checks from either form.
#[tokio::test]
async fn a_view_over_a_jobs_limited_columns_keeps_the_table_checks_until_it_is_dropped() {
    let (db, migrator) = before_0019().await;
    sqlx::query("create view job_kinds as select id, kind, state from forge_jobs")
        .execute(db.pool())
        .await
        .expect("view");
    assert_eq!(run_logging(&migrator, db.pool()).await, [tracing::Level::WARN], "one warning, in the log");
    assert_eq!(job_limits(db.pool()).await, (base_types(), 5), "the checks are kept");
    assert_job_limits_refuse(db.pool()).await;
    assert!(!use_domains(db.pool()).await, "the view is still there");

    sqlx::query("drop view job_kinds").execute(db.pool()).await.expect("drop view");
    assert!(use_domains(db.pool()).await);
    assert_eq!(job_limits(db.pool()).await, (domains(), 0));
    assert_job_limits_refuse(db.pool()).await;
    assert!(use_domains(db.pool()).await, "a second call finds the columns moved");

    migrator.down(db.pool(), 1).await.expect("down 0019 after the move");
    assert_eq!(job_limits(db.pool()).await, (base_types(), 5));
    assert_job_limits_refuse(db.pool()).await;
}

/// On a database in use (here: a job in it), migration 0019 leaves the columns' types alone:
/// processes started before it would fail their prepared statements returning those columns
/// ("cached plan must not change result type"). It says so in one warning; the operator's
/// `forge_jobs_use_domains()` makes the move, keeping the rows.
#[tokio::test]
async fn a_database_in_use_keeps_the_table_checks_until_the_operator_moves_them() {
    let (db, migrator) = before_0019().await;
    let id: i64 = sqlx::query_scalar("insert into forge_jobs (kind) values ('k') returning id")
        .fetch_one(db.pool())
        .await
        .expect("a job");
    assert_eq!(run_logging(&migrator, db.pool()).await, [tracing::Level::WARN], "one warning, in the log");
    assert_eq!(job_limits(db.pool()).await, (base_types(), 5), "the checks are kept");

    assert!(use_domains(db.pool()).await);
    assert_eq!(job_limits(db.pool()).await, (domains(), 0));
    let kept: String = sqlx::query_scalar("select kind from forge_jobs where id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .expect("the row is kept");
    assert_eq!(kept, "k");
    sqlx::query("delete from forge_jobs").execute(db.pool()).await.expect("clear");
    assert_job_limits_refuse(db.pool()).await;
}

/// The levels of the server's notices logged, in order.
#[derive(Clone, Default)]
struct NoticeLevels(std::sync::Arc<std::sync::Mutex<Vec<tracing::Level>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for NoticeLevels {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "sqlx::postgres::notice" {
            self.0.lock().expect("levels").push(*event.metadata().level());
        }
    }
}
