//! Crons in one process: firing on the leader, running on workers, exactly once per tick,
//! catch-up after a gap, and the overlap rule.

use std::time::{Duration, Instant};

use forge::config::{Role, Roles};
use forge::prelude::*;
use forge::testing::TestDatabase;

async fn record(ctx: &CronContext) -> Result<(), JobError> {
    assert!(ctx.execution_time() >= ctx.scheduled_time());
    sqlx::query("insert into cron_ticks (name, scheduled_at, catch_up, late) values ($1, $2, $3, $4)")
        .bind(ctx.name())
        .bind(ctx.scheduled_time())
        .bind(ctx.is_catch_up())
        .bind(ctx.is_late())
        .execute(ctx.db())
        .await?;
    Ok(())
}

#[forge::cron("* * * * * *")]
async fn every_second(ctx: &CronContext) -> Result<(), JobError> {
    record(ctx).await
}

#[forge::cron("* * * * * *", catch_up, catch_up_limit = 5, name = "catching_up")]
async fn catching_up(ctx: &CronContext) -> Result<(), JobError> {
    record(ctx).await
}

/// Stays running until a later tick of its own has been skipped (or 10 s pass), so the
/// scheduler is sure to find it live.
#[forge::cron("* * * * * *", overlap = "skip")]
async fn slow(ctx: &CronContext) -> Result<(), JobError> {
    record(ctx).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let skipped: bool = sqlx::query_scalar(
            "select exists (select 1 from forge_cron_runs
                            where cron_name = 'slow' and status = 'skipped' and scheduled_at > $1)",
        )
        .bind(ctx.scheduled_time())
        .fetch_one(ctx.db())
        .await?;
        if skipped {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn setup() -> TestDatabase {
    let db = TestDatabase::new().await.expect("db");
    sqlx::query("create table cron_ticks (name text, scheduled_at timestamptz, catch_up bool, late bool)")
        .execute(db.pool())
        .await
        .expect("table");
    db
}

async fn node(db: &TestDatabase) -> RunningForge {
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Worker, Role::Scheduler]).expect("roles");
    config.node.heartbeat_interval = "100ms".parse().expect("duration");
    config.node.dead_after = "1s".parse().expect("duration");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    Forge::builder().config(config).build().expect("build").start().await.expect("start")
}

async fn scalar(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

async fn wait_for(pool: &sqlx::PgPool, sql: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while scalar(pool, sql).await < want {
        assert!(Instant::now() < deadline, "`{sql}` never reached {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_cron_fires_every_tick_once_and_runs_as_a_job() {
    let db = setup().await;
    let n = node(&db).await;
    wait_for(db.pool(), "select count(*) from cron_ticks where name = 'every_second'", 3).await;
    let ticks: Vec<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "select scheduled_at from forge_cron_runs where cron_name = 'every_second' order by scheduled_at",
    )
    .fetch_all(db.pool())
    .await
    .expect("ticks");
    assert!(ticks.windows(2).all(|w| w[1] - w[0] == chrono::TimeDelta::seconds(1)), "consecutive seconds: {ticks:?}");
    assert!(ticks.iter().all(|t| t.timestamp_subsec_nanos() == 0));
    // Each tick ran as a job of kind cron:every_second.
    let jobs = scalar(db.pool(), "select count(*) from forge_jobs where kind = 'cron:every_second'").await;
    assert_eq!(jobs, i64::try_from(ticks.len()).expect("fits"));
    n.stop().await.expect("stop");
}

#[tokio::test]
async fn two_schedulers_fire_each_tick_once() {
    let db = setup().await;
    let (a, b) = tokio::join!(node(&db), node(&db));
    wait_for(db.pool(), "select count(*) from cron_ticks where name = 'every_second'", 4).await;
    let doubled = scalar(
        db.pool(),
        "select count(*) from (select scheduled_at from cron_ticks where name = 'every_second'
           group by scheduled_at having count(*) > 1) t",
    )
    .await;
    assert_eq!(doubled, 0);
    a.stop().await.expect("stop");
    b.stop().await.expect("stop");
}

#[tokio::test]
async fn missed_ticks_are_caught_up_up_to_the_limit() {
    let db = setup().await;
    // The cron last fired 20 s ago: the ticks since are missed.
    sqlx::query(
        "insert into forge_cron_runs (cron_name, scheduled_at, status, fired_by)
         values ('catching_up', date_trunc('second', now()) - interval '20 seconds', 'fired', 'earlier')",
    )
    .execute(db.pool())
    .await
    .expect("earlier run");
    let n = node(&db).await;
    wait_for(db.pool(), "select count(*) from cron_ticks where name = 'catching_up' and catch_up", 4).await;
    let oldest_fired: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "select min(scheduled_at) from forge_cron_runs where cron_name = 'catching_up' and fired_by <> 'earlier'",
    )
    .fetch_one(db.pool())
    .await
    .expect("oldest");
    let caught_up =
        scalar(db.pool(), "select count(*) from forge_cron_runs where cron_name = 'catching_up' and catch_up").await;
    assert_eq!(caught_up, 4, "the limit of 5: the 4 newest missed ticks are caught up, plus the current one");
    assert!(chrono::Utc::now() - oldest_fired < chrono::TimeDelta::seconds(15), "older missed ticks were dropped");
    n.stop().await.expect("stop");
}

#[tokio::test]
async fn a_tick_is_skipped_while_the_previous_run_is_live() {
    let db = setup().await;
    let n = node(&db).await;
    wait_for(db.pool(), "select count(*) from forge_cron_runs where cron_name = 'slow' and status = 'skipped'", 1)
        .await;
    let concurrent =
        scalar(db.pool(), "select count(*) from forge_jobs where kind = 'cron:slow' and state = 'running'").await;
    assert!(concurrent <= 1, "overlap = skip: never two runs at once");
    n.stop().await.expect("stop");
}

#[tokio::test]
async fn a_paused_cron_fires_nothing_and_a_resumed_one_does_not_catch_up() {
    let db = setup().await;
    forge::cron::pause_cron(db.pool(), "every_second", "test").await.expect("pause");
    let n = node(&db).await;
    wait_for(
        db.pool(),
        "select count(*) from forge_cron_runs where cron_name = 'every_second' and status = 'paused'",
        2,
    )
    .await;
    assert_eq!(scalar(db.pool(), "select count(*) from forge_jobs where kind = 'cron:every_second'").await, 0);

    assert!(forge::cron::resume_cron(db.pool(), "every_second").await.expect("resume"));
    let resumed: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select now()").fetch_one(db.pool()).await.expect("now");
    wait_for(db.pool(), "select count(*) from cron_ticks where name = 'every_second'", 2).await;
    let before: i64 = sqlx::query_scalar(
        "select count(*) from forge_cron_runs where cron_name = 'every_second' and status = 'fired' and scheduled_at < $1 - interval '1 second'",
    )
    .bind(resumed)
    .fetch_one(db.pool())
    .await
    .expect("count");
    assert_eq!(before, 0, "ticks missed while paused are not fired after the resume");
    n.stop().await.expect("stop");
}
