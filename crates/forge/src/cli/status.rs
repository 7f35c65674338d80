//! `forge status`: nodes and the leader, queue depths, failures in the last hour.

use chrono::Utc;
use forge::jobs;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{db_error, print_json, text};

/// `forge status`: nodes and the leader, queue depths, failures in the last hour.
pub(crate) async fn status(pool: &PgPool, json: bool) -> Result<(), String> {
    let nodes = forge::cluster::nodes(pool).await.map_err(db_error)?;
    let summaries = jobs::queue_summaries(pool).await.map_err(db_error)?;
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    let (failed_attempts, discarded) = jobs::failures_since(pool, hour_ago).await.map_err(db_error)?;
    let live: Vec<&Value> =
        nodes.iter().filter(|n| matches!(n["status"].as_str(), Some("running" | "draining"))).collect();
    let leader = nodes.iter().find(|n| n["leader"] == true).and_then(|n| n["id"].as_str());
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
    println!("nodes: {} live, leader {}", live.len(), leader.unwrap_or("none"));
    for n in &nodes {
        let roles: Vec<&str> = n["roles"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let age = n["heartbeat_age_s"].as_f64().unwrap_or(0.0);
        println!(
            "  {:<32} {:<9} {:<28} heartbeat {:.1}s ago{}",
            text(&n["id"]),
            text(&n["status"]),
            roles.join(","),
            age,
            if n["leader"] == true { "  (leader)" } else { "" }
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
    println!("last hour: {failed_attempts} failed attempts, {discarded} jobs discarded");
    Ok(())
}
