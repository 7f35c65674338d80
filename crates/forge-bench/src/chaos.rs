//! `forge-bench chaos`: worker processes drain transactional ledger jobs while one of them is
//! killed with SIGKILL (and restarted) at a steady pace. Every job must complete exactly once.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use forge::prelude::*;
use forge::testing::TestDatabase;

use crate::stats::Report;
use crate::worker::{LedgerArgs, LedgerWrite, Processes, SCHEMA};

pub(crate) async fn run(jobs: usize, nodes: usize, kill_every_ms: u64) -> Report {
    let db = TestDatabase::new().await?;
    sqlx::raw_sql(SCHEMA).execute(db.pool()).await?;
    let args: Vec<LedgerArgs> = (0..jobs).map(|_| LedgerArgs { work_ms: 1 }).collect();
    for chunk in args.chunks(1000) {
        LedgerWrite::dispatch_many(db.pool(), chunk.to_vec(), DispatchOptions::new()).await?;
    }

    let mut children = Processes((0..nodes).map(|_| spawn_worker(db.url())).collect::<Result<_, _>>()?);
    let mut kills = 0u64;
    let mut next_kill = Instant::now() + Duration::from_millis(kill_every_ms);
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut seed = uuid::Uuid::new_v4().as_u128();
    loop {
        let live: i64 = sqlx::query_scalar("select count(*) from forge_jobs where finalized_at is null")
            .fetch_one(db.pool())
            .await?;
        if live == 0 || Instant::now() > deadline {
            break;
        }
        if kill_every_ms > 0 && Instant::now() >= next_kill {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let victim = (seed >> 64) as usize % children.0.len();
            kill9(&mut children.0[victim]);
            children.0[victim] = spawn_worker(db.url())?;
            kills += 1;
            next_kill = Instant::now() + Duration::from_millis(kill_every_ms);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for child in &mut children.0 {
        terminate(child);
    }

    let completed: i64 =
        sqlx::query_scalar("select count(*) from forge_jobs where state = 'completed'").fetch_one(db.pool()).await?;
    let finalized_twice: i64 = sqlx::query_scalar(
        "select count(*) from (select job_id from bench_ledger group by job_id having count(*) > 1) t",
    )
    .fetch_one(db.pool())
    .await?;
    let lost: i64 = sqlx::query_scalar(
        "select count(*) from forge_jobs j where j.kind = 'ledger_write'
           and not exists (select 1 from bench_ledger l where l.job_id = j.id)",
    )
    .fetch_one(db.pool())
    .await?;
    let executions: i64 = sqlx::query_scalar("select count(*) from bench_executions").fetch_one(db.pool()).await?;
    Ok(serde_json::json!({
        "bench": "chaos",
        "dispatched": jobs,
        "completed": completed,
        "lost": lost,
        "finalized_twice": finalized_twice,
        "executions": executions,
        "kills": kills,
    }))
}

fn spawn_worker(url: &str) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["worker", "--database-url", url, "--lease", "2s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

fn kill9(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

fn terminate(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill with a child's pid and a valid signal has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let _ = child.wait();
}
