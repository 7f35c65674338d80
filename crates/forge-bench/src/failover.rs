//! `forge-bench failover`: nodes scheduling a cron every second (with catch-up); the leader is
//! killed with SIGKILL halfway. Every tick of the window must fire exactly once.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use forge::testing::TestDatabase;

use crate::stats::Report;
use crate::worker::{Processes, SCHEMA};

pub(crate) async fn run(nodes: usize, seconds: u64) -> Report {
    let db = TestDatabase::new().await?;
    sqlx::raw_sql(SCHEMA).execute(db.pool()).await?;
    let mut children = Processes((0..nodes).map(|_| spawn_node(db.url())).collect::<Result<_, _>>()?);

    let (first_leader, pid) = wait_leader(db.pool(), None, Duration::from_secs(30)).await?;
    let window_start: DateTime<Utc> = sqlx::query_scalar("select now()").fetch_one(db.pool()).await?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;

    let index = children.0.iter().position(|c| i32::try_from(c.id()).ok() == Some(pid));
    let index = index.ok_or("the leader is not one of the started nodes")?;
    let mut victim = children.0.remove(index);
    let _ = victim.kill();
    victim.wait()?;
    let killed = Instant::now();
    wait_leader(db.pool(), Some(&first_leader), Duration::from_secs(30)).await?;
    let takeover = killed.elapsed();

    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let window_end: DateTime<Utc> = sqlx::query_scalar("select now()").fetch_one(db.pool()).await?;
    // Whole seconds strictly inside the window.
    let last =
        if window_end.timestamp_subsec_nanos() == 0 { window_end.timestamp() - 1 } else { window_end.timestamp() };
    let expected = (last - window_start.timestamp()).max(0);
    let in_window = "scheduled_at > $1 and scheduled_at < $2";
    // Wait for the last ticks' jobs to run (a loaded machine may take a few seconds), up to 20 s.
    let settle = Instant::now() + Duration::from_secs(20);
    let fired = loop {
        let fired: i64 =
            sqlx::query_scalar(&format!("select count(distinct scheduled_at) from bench_cron_ticks where {in_window}"))
                .bind(window_start)
                .bind(window_end)
                .fetch_one(db.pool())
                .await?;
        if fired >= expected || Instant::now() > settle {
            break fired;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Ticks recorded as skipped (a previous run still live): none, since the cron allows overlap.
    let skipped: i64 = sqlx::query_scalar(
        "select count(*) from forge_cron_runs where status = 'skipped' and scheduled_at > $1 and scheduled_at < $2",
    )
    .bind(window_start)
    .bind(window_end)
    .fetch_one(db.pool())
    .await?;
    // A duplicate of a tick would run beside it; give one as long as before to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(children);
    let duplicated: i64 = sqlx::query_scalar(&format!(
        "select count(*) from (select scheduled_at from bench_cron_ticks where {in_window}
           group by scheduled_at having count(distinct job_id) > 1) t"
    ))
    .bind(window_start)
    .bind(window_end)
    .fetch_one(db.pool())
    .await?;
    Ok(serde_json::json!({
        "bench": "failover",
        "nodes": nodes,
        "leader_takeover_ms": crate::stats::ms(takeover),
        "cron_ticks_expected": expected,
        "cron_ticks_fired": fired,
        "cron_ticks_duplicated": duplicated,
        "cron_ticks_skipped": skipped,
    }))
}

fn spawn_node(url: &str) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["worker", "--database-url", url, "--lease", "2s", "--heartbeat", "200ms", "--crons"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// Waits for a running node other than `not` to lead; returns its id and pid.
pub(crate) async fn wait_leader(
    pool: &sqlx::PgPool,
    not: Option<&str>,
    limit: Duration,
) -> Result<(String, i32), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + limit;
    loop {
        let leader: Option<(String, i32)> = sqlx::query_as(
            "select n.id, n.pid from forge_leaders l join forge_nodes n on n.id = l.node_id
             where l.role = 'scheduler' and n.status = 'running'",
        )
        .fetch_optional(pool)
        .await?;
        if let Some((id, pid)) = leader
            && Some(id.as_str()) != not
        {
            return Ok((id, pid));
        }
        if Instant::now() > deadline {
            return Err("no leader".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
