//! `forge-bench floor`: the leanest plain-SQL queue over the same table, with fsync on: bulk
//! insert, then a few loops that each claim a batch with SKIP LOCKED and complete it with one
//! statement. What no engine on this machine can beat.

use std::time::Instant;

use forge::testing::TestDatabase;

use crate::stats::Report;
use crate::stats::{CpuTime, per_second};

const LOOPS: usize = 4;
const CLAIM: i64 = 100;

pub(crate) async fn run(jobs: usize) -> Report {
    let db = TestDatabase::new().await?;
    let fsync: String = sqlx::query_scalar("show fsync").fetch_one(db.pool()).await?;
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(1000) {
        sqlx::query("insert into forge_jobs (kind, args) select 'noop', 'null'::jsonb from generate_series(1, $1)")
            .bind(i32::try_from(chunk.len()).unwrap_or(i32::MAX))
            .execute(db.pool())
            .await?;
    }

    let started = Instant::now();
    let cpu = CpuTime::now();
    let mut loops = Vec::new();
    for _ in 0..LOOPS {
        let pool = db.pool().clone();
        loops.push(tokio::spawn(async move {
            loop {
                let claimed: Vec<i64> = sqlx::query_scalar(
                    "update forge_jobs set state = 'running', attempt = attempt + 1, attempted_at = now()
                     where id in (select id from forge_jobs where state = 'available' and queue = 'default'
                                  order by priority, run_at, id limit $1 for update skip locked)
                     returning id",
                )
                .bind(CLAIM)
                .fetch_all(&pool)
                .await?;
                if claimed.is_empty() {
                    return Ok::<(), sqlx::Error>(());
                }
                sqlx::query("update forge_jobs set state = 'completed', finalized_at = now() where id = any($1)")
                    .bind(&claimed)
                    .execute(&pool)
                    .await?;
            }
        }));
    }
    for l in loops {
        l.await??;
    }
    let drain = started.elapsed();
    let drain_cpu = CpuTime::per_job_since(cpu, jobs);
    Ok(serde_json::json!({
        "bench": "floor",
        "jobs": jobs,
        "fsync": fsync,
        "drain_per_s": per_second(jobs, drain),
        "drain_cpu": drain_cpu,
    }))
}
