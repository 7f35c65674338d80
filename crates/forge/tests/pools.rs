//! Application work cannot starve the control plane: ten long transactional jobs and a flood of
//! mutation calls on one node, with a 2 s lease and a 1 s `dead_after`, and no job is rescued,
//! fenced or run twice, and the node is never declared dead.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use forge::config::{Role, Roles};
use forge::prelude::*;

/// Holds its transaction (a connection) for three leases.
#[forge::job(transactional, timeout = "60s", max_attempts = 3)]
async fn long_transaction(ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    let mut tx = ctx.tx().await?;
    sqlx::query("insert into notes (body) values ('from a transactional job')")
        .execute(&mut tx)
        .await
        .map_err(|e| JobError::retry(e.to_string()))?;
    drop(tx);
    tokio::time::sleep(Duration::from_secs(6)).await;
    Ok(())
}

#[tokio::test]
async fn long_transactions_and_a_flood_of_calls_do_not_get_jobs_rescued_or_the_node_declared_dead() {
    let db = common::notes_database().await;
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Gateway, Role::Function, Role::Worker, Role::Scheduler]).expect("roles");
    config.database.pool_size = std::num::NonZeroU32::new(10).expect("10");
    config.worker.lease = "2s".parse().expect("duration");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    config.node.heartbeat_interval = "200ms".parse().expect("duration");
    config.node.dead_after = "1s".parse().expect("duration");
    config.observability.flush_interval = "100ms".parse().expect("duration");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let node = Forge::builder().config(config).listener(listener).build().expect("build").start().await.expect("start");
    let base = format!("http://{}", node.local_addr().expect("addr"));

    let mut jobs = Vec::new();
    for _ in 0..10 {
        jobs.push(LongTransaction::dispatch(&node, ()).await.expect("dispatch"));
    }
    // The flood: 100 callers creating notes as fast as the gateway lets them.
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, shed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = reqwest::Client::new();
    let callers: Vec<_> = (0..100)
        .map(|i| {
            let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
            let (answered, shed) = (answered.clone(), shed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let body = serde_json::json!({ "body": format!("flood {i}") });
                    match client.post(format!("{base}/rpc/create_note")).json(&body).send().await {
                        Ok(r) if r.status().is_success() => answered.fetch_add(1, Ordering::Relaxed),
                        _ => shed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();

    let mut dead_seen = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status: String = sqlx::query_scalar("select status from forge_nodes where id = $1")
            .bind(node.node_id())
            .fetch_one(db.pool())
            .await
            .expect("node");
        dead_seen |= status == "dead";
        let open: i64 = sqlx::query_scalar(
            "select count(*) from forge_jobs where id = any($1) and state not in ('completed', 'discarded', 'cancelled')",
        )
        .bind(&jobs)
        .fetch_one(db.pool())
        .await
        .expect("count");
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the jobs did not finish within 90 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.expect("caller");
    }
    eprintln!("calls answered: {}, refused: {}", answered.load(Ordering::Relaxed), shed.load(Ordering::Relaxed));
    assert!(answered.load(Ordering::Relaxed) > 0, "calls were served meanwhile");
    assert!(!dead_seen, "the node was declared dead");
    let rows: Vec<(String, i32, serde_json::Value)> =
        sqlx::query_as("select state, attempt, errors from forge_jobs where id = any($1)")
            .bind(&jobs)
            .fetch_all(db.pool())
            .await
            .expect("jobs");
    for (state, attempt, errors) in &rows {
        assert_eq!((state.as_str(), *attempt), ("completed", 1), "rescued, fenced or retried: {errors}");
    }
    let written: i64 = sqlx::query_scalar("select count(*) from notes where body = 'from a transactional job'")
        .fetch_one(db.pool())
        .await
        .expect("notes");
    assert_eq!(written, 10, "each job's transaction committed once");
    node.stop().await.expect("stop");
}
