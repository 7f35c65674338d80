//! `forge-bench workflows`: durable workflow runs whose tx_steps write a ledger, drained by
//! worker processes, optionally killed with SIGKILL throughout. Also the workflows the kill
//! tests run (`tests/workflows_kill.rs`).
//!
//! The report counts `completed` (runs whose job completed: must equal `runs`),
//! `completed_twice` (runs whose job was made `completed` more than once, seen by a trigger on
//! the bench's own database), `tx_steps_applied_twice` (a tx_step's ledger row written twice),
//! `stuck` (runs not finished at the end), and the throughput.

use std::time::{Duration, Instant};

use forge::prelude::*;
use forge::testing::TestDatabase;
use serde::{Deserialize, Serialize};

use crate::stats::Report;
use crate::worker::{Processes, SCHEMA};

/// Arguments of [`bench_flow`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FlowArgs {
    /// tx_steps, each writing one ledger row.
    pub(crate) steps: u32,
}

/// `steps` tx_steps, each writing its ledger row in the transaction that records it.
#[forge::workflow(max_attempts = 1000)]
pub(crate) async fn bench_flow(ctx: &WorkflowContext, args: FlowArgs) -> Result<u32, WorkflowError> {
    let run = ctx.run_id().0;
    for step in 0..args.steps {
        let step = i32::try_from(step).unwrap_or(i32::MAX);
        ctx.tx_step("ledger", |mut tx| async move {
            sqlx::query("insert into bench_wf_ledger (run_id, step) values ($1, $2)")
                .bind(run)
                .bind(step)
                .execute(&mut tx)
                .await?;
            Ok(())
        })
        .await?;
    }
    Ok(args.steps)
}

/// Records an execution of a probe's step (outside any transaction, so a killed one counts).
async fn probe_effect(ctx: &WorkflowContext, what: &str) -> Result<(), JobError> {
    sqlx::query("insert into bench_wf_effects (run_id, what, attempt, pid) values ($1, $2, $3, $4)")
        .bind(ctx.run_id().0)
        .bind(what)
        .bind(i32::try_from(ctx.job().attempt()).unwrap_or(0))
        .bind(i32::try_from(std::process::id()).unwrap_or(0))
        .execute(ctx.db())
        .await?;
    Ok(())
}

/// On its first execution, stalls for a minute after the step's effect and before its
/// checkpoint: the kill test kills the process there.
async fn stall_on_first_execution(ctx: &WorkflowContext) {
    if ctx.job().attempt() == 1 {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// A step whose effect happens, then the process may die before the checkpoint: the step runs
/// again on the next execution (at least once).
#[forge::workflow(max_attempts = 10)]
pub(crate) async fn kill_probe_step(ctx: &WorkflowContext, _args: ()) -> Result<(), WorkflowError> {
    ctx.step("effect", || async {
        probe_effect(ctx, "step").await?;
        stall_on_first_execution(ctx).await;
        Ok(())
    })
    .await?;
    ctx.step("after", || async { probe_effect(ctx, "after").await }).await
}

/// A tx_step whose ledger write is in its transaction when the process dies: rolled back, and
/// applied once by the next execution (exactly once).
#[forge::workflow(max_attempts = 10)]
pub(crate) async fn kill_probe_tx(ctx: &WorkflowContext, _args: ()) -> Result<(), WorkflowError> {
    let run = ctx.run_id().0;
    ctx.tx_step("ledger", |mut tx| async move {
        probe_effect(ctx, "tx_step").await?;
        sqlx::query("insert into bench_wf_ledger (run_id, step) values ($1, 0)").bind(run).execute(&mut tx).await?;
        stall_on_first_execution(ctx).await;
        Ok(())
    })
    .await
}

/// The workflow bench's own tables, and the trigger that counts completions.
pub(crate) const WORKFLOW_SCHEMA: &str = r#"
create table if not exists bench_wf_ledger (run_id bigint not null, step int not null);
create table if not exists bench_wf_effects (
    n bigserial primary key, run_id bigint not null, what text not null, attempt int not null, pid int not null
);
create table if not exists bench_wf_completions (run_id bigint not null, at timestamptz not null default now());
create or replace function bench_wf_completed() returns trigger language plpgsql as $$
begin
    insert into bench_wf_completions (run_id) values (new.id);
    return null;
end $$;
drop trigger if exists bench_wf_completed on forge_jobs;
create trigger bench_wf_completed after update of state on forge_jobs
    for each row when (new.state = 'completed' and new.kind = 'bench_flow')
    execute function bench_wf_completed();
"#;

/// `forge-bench workflows`'s options.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkflowsArgs {
    /// Runs to start.
    #[arg(long, default_value_t = 5000)]
    runs: usize,
    /// tx_steps per run.
    #[arg(long, default_value_t = 3)]
    steps: u32,
    /// Worker processes.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Kill (and restart) one worker this often; 0 kills none.
    #[arg(long, default_value_t = 0)]
    kill_every_ms: u64,
    /// The workers' job lease.
    #[arg(long, default_value = "2s")]
    lease: String,
    /// Runs of the default queue each worker executes at once.
    #[arg(long, default_value_t = 20)]
    concurrency: usize,
    /// Instead: the idle pickup latency of ordinary jobs, on an empty table and then with this
    /// many workflow runs sleeping in it.
    #[arg(long)]
    sleeping: Option<usize>,
}

/// Sleeps a day: what fills the table in `--sleeping`.
#[forge::workflow]
pub(crate) async fn bench_sleeper(ctx: &WorkflowContext, _args: ()) -> Result<(), WorkflowError> {
    ctx.sleep(Duration::from_secs(86_400)).await
}

/// Dispatch one no-op job at a time, 20 ms apart, on an idle node; dispatch → start latencies.
async fn pickups(db: &TestDatabase, node: &RunningForge) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let mut ids = Vec::with_capacity(200);
    for _ in 0..200 {
        ids.push(crate::worker::Noop::dispatch(node, None).await?.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut latencies: Vec<Duration> = loop {
        let rows: Vec<Option<f64>> = sqlx::query_scalar(
            "select extract(epoch from attempted_at - created_at)::float8 from forge_jobs
             where id = any($1) and state = 'completed'",
        )
        .bind(&ids)
        .fetch_all(db.pool())
        .await?;
        if rows.len() == ids.len() {
            break rows.into_iter().map(|s| Duration::from_secs_f64(s.unwrap_or(0.0).max(0.0))).collect();
        }
        if Instant::now() > deadline {
            return Err("pickup jobs did not complete within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    latencies.sort();
    Ok(latencies)
}

/// `--sleeping N`: pickup latency with an empty table, then with `n` runs sleeping.
async fn sleeping(n: usize) -> Report {
    use crate::stats::{ms, quantile};
    let db = TestDatabase::new().await?;
    let mut config = db.config();
    config.node.roles =
        forge::config::Roles::new([forge::config::Role::Worker, forge::config::Role::Scheduler]).ok_or("roles")?;
    config.observability.log_level = "warn".to_owned();
    let node = Forge::builder().config(config).crons(false).build()?.start().await?;
    let empty = pickups(&db, &node).await?;
    sqlx::query("delete from forge_jobs").execute(db.pool()).await?;
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        BenchSleeper::start_many(db.pool(), vec![(); chunk.len()], StartOptions::new()).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let asleep: i64 =
            sqlx::query_scalar("select count(*) from forge_jobs where kind = 'bench_sleeper' and state = 'scheduled'")
                .fetch_one(db.pool())
                .await?;
        if asleep >= i64::try_from(n).unwrap_or(i64::MAX) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {asleep} of {n} runs went to sleep in 30 minutes").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let put_to_sleep = started.elapsed();
    sqlx::query("vacuum analyze forge_jobs").execute(db.pool()).await?;
    let full = pickups(&db, &node).await?;
    let running: i64 =
        sqlx::query_scalar("select count(*) from forge_jobs where state = 'running'").fetch_one(db.pool()).await?;
    node.stop().await?;
    Ok(serde_json::json!({
        "bench": "workflows-sleeping",
        "sleeping": n,
        "sleeping_runs_started_per_s": (n as f64 / put_to_sleep.as_secs_f64()).round(),
        "running_while_asleep": running,
        "empty_pickup_p50_ms": ms(quantile(&empty, 0.5)),
        "empty_pickup_p99_ms": ms(quantile(&empty, 0.99)),
        "sleeping_pickup_p50_ms": ms(quantile(&full, 0.5)),
        "sleeping_pickup_p99_ms": ms(quantile(&full, 0.99)),
    }))
}

pub(crate) async fn run(args: WorkflowsArgs) -> Report {
    if let Some(n) = args.sleeping {
        return sleeping(n.max(1)).await;
    }
    let db = TestDatabase::new().await?;
    let pool = db.pool().clone();
    sqlx::raw_sql(SCHEMA).execute(&pool).await?;
    sqlx::raw_sql(WORKFLOW_SCHEMA).execute(&pool).await?;
    let runs = args.runs.max(1);
    // Runs are started ahead (one statement per 1,000), then the clock starts with the workers.
    let inputs: Vec<FlowArgs> = (0..runs).map(|_| FlowArgs { steps: args.steps }).collect();
    for chunk in inputs.chunks(1000) {
        BenchFlow::start_many(&pool, chunk.to_vec(), StartOptions::new()).await?;
    }
    let concurrency = args.concurrency.to_string();
    let spawn = || {
        std::process::Command::new(std::env::current_exe()?)
            .args(["worker", "--database-url", db.url(), "--lease", &args.lease, "--concurrency", &concurrency])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
    };
    let mut children = Processes((0..args.nodes.max(1)).map(|_| spawn()).collect::<Result<_, _>>()?);
    let started = Instant::now();
    let mut next_kill = started + Duration::from_millis(args.kill_every_ms);
    let deadline = started + Duration::from_secs(900);
    let mut kills = 0u64;
    let mut seed = uuid::Uuid::new_v4().as_u128();
    let finished_sql = "select count(*) from forge_jobs where kind = 'bench_flow' and finalized_at is not null";
    loop {
        let finished: i64 = sqlx::query_scalar(finished_sql).fetch_one(&pool).await?;
        if finished >= i64::try_from(runs).unwrap_or(i64::MAX) || Instant::now() > deadline {
            break;
        }
        if args.kill_every_ms > 0 && Instant::now() >= next_kill {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let victim = (seed >> 64) as usize % children.0.len();
            let _ = children.0[victim].kill(); // SIGKILL
            let _ = children.0[victim].wait();
            children.0[victim] = spawn()?;
            kills += 1;
            next_kill = Instant::now() + Duration::from_millis(args.kill_every_ms);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    drop(children);
    let figure = async |sql: &str| -> Result<i64, sqlx::Error> { sqlx::query_scalar(sql).fetch_one(&pool).await };
    let completed = figure("select count(*) from forge_jobs where kind = 'bench_flow' and state = 'completed'").await?;
    let completed_twice =
        figure("select count(*) from (select run_id from bench_wf_completions group by run_id having count(*) > 1) t")
            .await?;
    let applied_twice =
        figure("select count(*) from (select 1 from bench_wf_ledger group by run_id, step having count(*) > 1) t")
            .await?;
    let missing_steps = figure(&format!(
        "select count(*) from forge_jobs j where j.kind = 'bench_flow' and j.state = 'completed'
           and (select count(distinct step) from bench_wf_ledger l where l.run_id = j.id) <> {}",
        args.steps
    ))
    .await?;
    let stuck = figure("select count(*) from forge_jobs where kind = 'bench_flow' and finalized_at is null").await?;
    let secs = elapsed.as_secs_f64();
    Ok(serde_json::json!({
        "bench": "workflows",
        "runs": runs,
        "steps": args.steps,
        "nodes": args.nodes,
        "kills": kills,
        "completed": completed,
        "completed_twice": completed_twice,
        "tx_steps_applied_twice": applied_twice,
        "completed_with_missing_steps": missing_steps,
        "stuck": stuck,
        "seconds": secs,
        "runs_per_s": (completed as f64 / secs).round(),
        "steps_per_s": ((completed as f64) * f64::from(args.steps) / secs).round(),
    }))
}
