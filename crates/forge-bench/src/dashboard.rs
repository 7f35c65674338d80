//! `forge-bench dashboard`: how fast the dashboard's API answers over a large `forge_jobs`.
//! Fills a fresh database with `--jobs` jobs (mostly completed, some failed, scheduled and
//! available, over several kinds and queues, with logs for some), starts a gateway node, and
//! times each page's calls over HTTP, `--requests` times each. One JSON line per endpoint, and
//! a summary line with the slowest p90.

use std::time::{Duration, Instant};

use forge::config::{Role, Roles};
use forge::prelude::*;
use forge::testing::TestDatabase;

use crate::stats::Report;
use crate::stats::{ms, quantile};

/// Fills the table in one statement per kind of row.
const SEED: &str = r#"
insert into forge_jobs (kind, queue, state, args, attempt, max_attempts, errors, tags, run_at, created_at,
                        attempted_at, finalized_at)
select 'kind_' || (i % 8), 'queue_' || (i % 4),
       case when i % 100 = 0 then 'discarded' when i % 50 = 1 then 'retryable' when i % 20 = 2 then 'scheduled'
            when i % 20 = 3 then 'available' else 'completed' end,
       jsonb_build_object('user', i % 1000, 'n', i),
       1, 3,
       case when i % 100 = 0 or i % 50 = 1 then '[{"attempt": 1, "message": "boom"}]'::jsonb else '[]' end,
       case when i % 10 = 0 then array['vip'] else '{}' end,
       now() + case when i % 20 = 2 then interval '1 day' else interval '0' end,
       now() - make_interval(secs => ($1 - i) * 0.01),
       now() - make_interval(secs => ($1 - i) * 0.01),
       case when i % 20 in (2, 3) or i % 50 = 1 then null else now() - make_interval(secs => ($1 - i) * 0.01) end
from generate_series(1, $1) i
"#;

const LOGS: &str = r#"
insert into forge_logs (at, level, target, message, node_id, job_id)
select now() - make_interval(secs => i * 0.01), case when i % 10 = 0 then 'error' else 'info' end,
       'bench', 'line ' || i, 'bench-node', i
from generate_series(1, $1) i
"#;

pub(crate) async fn run(jobs: i64, requests: usize) -> Report {
    let db = TestDatabase::new().await?;
    let started = Instant::now();
    sqlx::query(SEED).bind(jobs).execute(db.pool()).await?;
    sqlx::query(LOGS).bind(jobs / 2).execute(db.pool()).await?;
    sqlx::raw_sql("analyze forge_jobs; analyze forge_logs").execute(db.pool()).await?;
    let seeded = started.elapsed();

    let mut config = db.config();
    config.node.roles = Roles::new([Role::Gateway]).ok_or("no roles")?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let node = Forge::builder().config(config).listener(listener).build()?.start().await?;
    let base = format!("http://{}", node.local_addr().ok_or("the node has no gateway")?);
    let client = reqwest::Client::new();

    let mid = jobs / 2;
    let endpoints = [
        ("overview", "/_api/overview".to_owned()),
        ("jobs", "/_api/jobs?limit=50".to_owned()),
        ("jobs, page in the middle", format!("/_api/jobs?limit=50&before={mid}")),
        ("jobs by state (discarded)", "/_api/jobs?state=discarded&limit=50".to_owned()),
        ("jobs by kind and queue", "/_api/jobs?kind=kind_3&queue=queue_3&limit=50".to_owned()),
        ("jobs by tag", "/_api/jobs?tag=vip&limit=50".to_owned()),
        ("jobs by arguments", "/_api/jobs?args=%7B%22user%22%3A7%7D&limit=50".to_owned()),
        ("job detail", format!("/_api/jobs/{mid}")),
        ("job logs", format!("/_api/jobs/{}/logs", mid / 2)),
        ("queues", "/_api/queues".to_owned()),
        ("logs (errors)", "/_api/logs?level=error&limit=100".to_owned()),
    ];
    let mut slowest = Duration::ZERO;
    let mut lines = Vec::new();
    for (name, path) in endpoints {
        let url = format!("{base}{path}");
        client.get(&url).send().await?.error_for_status()?;
        let mut samples = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            client.get(&url).send().await?.error_for_status()?.bytes().await?;
            samples.push(t.elapsed());
        }
        samples.sort();
        let p90 = quantile(&samples, 0.9);
        slowest = slowest.max(p90);
        let line = serde_json::json!({
            "bench": "dashboard",
            "endpoint": name,
            "path": path,
            "jobs": jobs,
            "requests": requests,
            "p50_ms": ms(quantile(&samples, 0.5)),
            "p90_ms": ms(p90),
            "max_ms": ms(quantile(&samples, 1.0)),
        });
        println!("{line}");
        lines.push(line);
    }
    node.stop().await?;
    Ok(serde_json::json!({
        "bench": "dashboard",
        "summary": true,
        "jobs": jobs,
        "seed_ms": ms(seeded),
        "slowest_p90_ms": ms(slowest),
        "target_ms": 300,
        "within_target": slowest < Duration::from_millis(300),
    }))
}
