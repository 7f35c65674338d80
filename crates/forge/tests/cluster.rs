//! The cluster in one process: node registry and heartbeats, leader election over an advisory
//! lock, stepping down when the lock's connection dies, and the leader's dead-node sweep.

use std::time::{Duration, Instant};

use forge::config::{Role, Roles};
use forge::prelude::*;
use forge::testing::TestDatabase;

#[forge::job]
async fn cluster_noop(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

async fn node(db: &TestDatabase, roles: &[Role]) -> RunningForge {
    let mut config = db.config();
    config.node.roles = Roles::new(roles.iter().copied()).expect("roles");
    config.node.heartbeat_interval = "100ms".parse().expect("duration");
    config.node.dead_after = "1s".parse().expect("duration");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    // Rescues wait a lease and a heartbeat after a term starts.
    config.worker.lease = "1s".parse().expect("duration");
    Forge::builder().config(config).build().expect("build").start().await.expect("start")
}

/// Polls `check` every 20 ms until it holds, failing after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn leader_row(pool: &sqlx::PgPool) -> Option<String> {
    sqlx::query_scalar("select node_id from forge_leaders where role = 'scheduler'")
        .fetch_optional(pool)
        .await
        .expect("forge_leaders")
}

#[tokio::test]
async fn a_node_registers_heartbeats_and_records_its_stop() {
    let db = TestDatabase::new().await.expect("db");
    let n = node(&db, &[Role::Worker]).await;
    let id = n.node_id().to_owned();
    let (status, pid, roles): (String, i32, Vec<String>) =
        sqlx::query_as("select status, pid, roles from forge_nodes where id = $1")
            .bind(&id)
            .fetch_one(db.pool())
            .await
            .expect("node row");
    assert_eq!(status, "running");
    assert_eq!(u32::try_from(pid).ok(), Some(std::process::id()));
    assert_eq!(roles, vec!["worker"]);
    let first: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select last_heartbeat from forge_nodes where id = $1")
            .bind(&id)
            .fetch_one(db.pool())
            .await
            .expect("hb");
    eventually(Duration::from_secs(5), "a heartbeat", || async {
        let now: chrono::DateTime<chrono::Utc> =
            sqlx::query_scalar("select last_heartbeat from forge_nodes where id = $1")
                .bind(&id)
                .fetch_one(db.pool())
                .await
                .expect("hb");
        now > first
    })
    .await;
    assert!(!n.is_leader(), "a node without the scheduler role never leads");
    n.stop().await.expect("stop");
    let status: String = sqlx::query_scalar("select status from forge_nodes where id = $1")
        .bind(&id)
        .fetch_one(db.pool())
        .await
        .expect("row");
    assert_eq!(status, "stopped");
}

#[tokio::test]
async fn exactly_one_of_two_schedulers_leads_and_the_other_takes_over() {
    let db = TestDatabase::new().await.expect("db");
    let a = node(&db, &[Role::Scheduler]).await;
    let b = node(&db, &[Role::Scheduler]).await;
    eventually(Duration::from_secs(5), "a leader", || async { a.is_leader() || b.is_leader() }).await;
    for _ in 0..20 {
        assert!(!(a.is_leader() && b.is_leader()), "two leaders at once");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (leader, follower) = if a.is_leader() { (a, b) } else { (b, a) };
    assert_eq!(leader_row(db.pool()).await.as_deref(), Some(leader.node_id()));

    leader.stop().await.expect("stop the leader");
    eventually(Duration::from_secs(5), "the follower taking over", || async { follower.is_leader() }).await;
    assert_eq!(leader_row(db.pool()).await.as_deref(), Some(follower.node_id()));
    follower.stop().await.expect("stop");
    assert_eq!(leader_row(db.pool()).await, None, "a leader that stops resigns");
}

#[tokio::test]
async fn a_leader_whose_lock_connection_dies_steps_down_and_campaigns_again() {
    let db = TestDatabase::new().await.expect("db");
    let a = node(&db, &[Role::Scheduler]).await;
    eventually(Duration::from_secs(5), "leadership", || async { a.is_leader() }).await;
    let term_started = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
            "select acquired_at from forge_leaders where role = 'scheduler'",
        )
        .fetch_one(db.pool())
        .await
        .expect("term")
    };
    let first_term = term_started().await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "select pg_terminate_backend(pid) from pg_locks where locktype = 'advisory' and granted
           and objid = (hashtext('forge_leader:scheduler')::bigint & 4294967295)::oid and database = (select oid from pg_database where datname = current_database())",
    )
    .fetch_all(db.pool())
    .await
    .expect("terminate");
    assert_eq!(killed, vec![true], "the lock is held by one session");
    // The node notices within a renewal interval, stops its duties, waits a campaign interval,
    // and (being alone) wins a new term on a new connection.
    eventually(Duration::from_secs(5), "a new term", || async { term_started().await > first_term }).await;
    // The term's row is written just before the node raises its flag.
    eventually(Duration::from_secs(5), "leading again", || async { a.is_leader() }).await;
    a.stop().await.expect("stop");
}

#[tokio::test]
async fn the_leader_declares_silent_nodes_dead_and_rescues_their_jobs_at_once() {
    let db = TestDatabase::new().await.expect("db");
    // A node that stopped heartbeating a minute ago, with a running job whose lease is still
    // fresh: only the dead-node sweep can rescue it now.
    sqlx::query(
        "insert into forge_nodes (id, hostname, pid, roles, version, last_heartbeat)
         values ('ghost', 'gone', 1, '{worker}', 'x', now() - interval '1 minute')",
    )
    .execute(db.pool())
    .await
    .expect("ghost node");
    let job: i64 = sqlx::query_scalar(
        "insert into forge_jobs (kind, args, state, attempt, attempted_by, heartbeat_at, attempted_at)
         values ('cluster_noop', 'null', 'running', 1, 'ghost', now(), now()) returning id",
    )
    .fetch_one(db.pool())
    .await
    .expect("job");
    let n = node(&db, &[Role::Scheduler, Role::Worker]).await;
    eventually(Duration::from_secs(10), "the ghost's job completing elsewhere", || async {
        let state: String = sqlx::query_scalar("select state from forge_jobs where id = $1")
            .bind(job)
            .fetch_one(db.pool())
            .await
            .expect("state");
        state == "completed"
    })
    .await;
    let status: String = sqlx::query_scalar("select status from forge_nodes where id = 'ghost'")
        .fetch_one(db.pool())
        .await
        .expect("ghost");
    assert_eq!(status, "dead");
    let errors: serde_json::Value = sqlx::query_scalar("select errors from forge_jobs where id = $1")
        .bind(job)
        .fetch_one(db.pool())
        .await
        .expect("errors");
    assert!(errors.to_string().contains("node ghost died"), "{errors}");
    n.stop().await.expect("stop");
}
