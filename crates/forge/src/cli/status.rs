//! `forge status`: nodes and the leader, queue depths, failures in the last hour.

use chrono::Utc;
use forge::cluster::NodeStatus;
use forge::jobs;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::output::{db_error, print_json};

/// `forge status`: nodes and the leader, queue depths, failures in the last hour.
pub(crate) async fn status(pool: &PgPool, json: bool) -> Result<(), String> {
    let nodes = forge::cluster::nodes(pool).await.map_err(db_error)?;
    let summaries = jobs::queue_summaries(pool).await.map_err(db_error)?;
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    let (failed_attempts, discarded) = jobs::failures_since(pool, hour_ago).await.map_err(db_error)?;
    let live = nodes.iter().filter(|n| matches!(n.status, NodeStatus::Running | NodeStatus::Draining)).count();
    let leader = nodes.iter().find(|n| n.leader).map(|n| n.id.as_str());
    let queues: serde_json::Map<String, Value> = summaries
        .into_iter()
        .map(|(name, q)| {
            let mut depth = json!(q.depth);
            if q.paused_at.is_some() {
                depth["paused"] = true.into();
            }
            (name, depth)
        })
        .collect();
    if json {
        return print_json(&json!({
            "nodes": nodes,
            "leader": leader,
            "queues": queues,
            "last_hour": { "failed_attempts": failed_attempts, "discarded": discarded },
        }));
    }
    println!("nodes: {live} live, leader {}", leader.unwrap_or("none"));
    for n in &nodes {
        println!(
            "  {:<32} {:<9} {:<28} heartbeat {:.1}s ago{}",
            n.id,
            n.status.as_str(),
            n.roles.join(","),
            n.heartbeat_age_s,
            if n.leader { "  (leader)" } else { "" }
        );
    }
    println!("queues:");
    if queues.is_empty() {
        println!("  (no unfinished jobs)");
    }
    for (name, depth) in &queues {
        let count = |s: &str| depth[s].as_i64().unwrap_or(0);
        println!(
            "  {:<20} available {:>6}  scheduled {:>6}  running {:>6}  retryable {:>6}{}",
            name,
            count("available"),
            count("scheduled"),
            count("running"),
            count("retryable"),
            if depth["paused"] == true { "  PAUSED" } else { "" }
        );
    }
    println!(
        "last hour: {}, {} discarded",
        super::output::count(failed_attempts, "failed attempt", "failed attempts"),
        super::output::count(discarded, "job", "jobs")
    );
    Ok(())
}
