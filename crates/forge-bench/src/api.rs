//! `forge-bench api`: the job API under load, over HTTP. `--clients` clients (each with its
//! own key and a webhook endpoint on a loopback receiver, wanting `job.succeeded`) submit jobs
//! from `--connections` keep-alive connections for `--seconds`, every submission with an
//! `Idempotency-Key`; a share of the requests (`--repeat-share`) repeats an earlier submission
//! with its key and body. `--watchers` clients follow jobs over Server-Sent Events until they
//! finish. Afterwards the bench waits for every job and every webhook, then counts:
//!
//! - `duplicates_created`: jobs in the table beyond one per acknowledged key (must be 0),
//!   and repeats answered with another job than the first (counted too);
//! - `lost`: acknowledged jobs that are not in the table or never succeeded (must be 0);
//! - `webhooks_delivered`: distinct events the receiver got; `webhooks_duplicated_without_same_id`:
//!   events it got under two different `webhook-id`s (a duplicate a receiver could not drop;
//!   must be 0).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use forge::gateway::{ApiKeys, NewApiKey};
use forge::prelude::*;
use forge::testing::TestDatabase;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::stats::{Report, ms, quantile};

/// What `forge-bench api` takes.
#[derive(Debug, clap::Args)]
pub(crate) struct ApiArgs {
    /// How long clients submit.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Clients of the API (each its own key, bucket and webhook endpoint).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Concurrent keep-alive connections submitting.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// The share of requests that repeat an earlier submission (same key, same body).
    #[arg(long, default_value_t = 0.1)]
    repeat_share: f64,
    /// Clients following a job over Server-Sent Events at any time.
    #[arg(long, default_value_t = 16)]
    watchers: usize,
    /// Measure submission alone: the node runs only the gateway (no worker, so no job runs and
    /// no webhook is delivered), there are no SSE watchers (their jobs would never finish), and
    /// `lost` counts acknowledged jobs missing from the table.
    #[arg(long)]
    submit_only: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Work {
    n: u64,
}

/// The kind clients submit: nothing to do, so the API is what is measured.
#[forge::job(api)]
async fn bench_api_work(_ctx: &JobContext, args: Work) -> Result<u64, JobError> {
    Ok(args.n)
}

/// What the webhook receiver saw: event id → the `webhook-id`s it came with.
type Seen = Arc<Mutex<HashMap<i64, HashSet<String>>>>;

/// One acknowledged submission.
struct Acked {
    key: String,
    id: i64,
}

pub(crate) async fn run(args: ApiArgs) -> Report {
    let db = TestDatabase::new().await?;
    let mut config = db.config();
    config.api.enabled = true;
    config.api.rate_limit.requests = 0;
    config.api.webhooks.allow_private = true;
    if args.submit_only {
        config.node.roles = forge::config::Roles::new([forge::config::Role::Gateway]).ok_or("no roles")?;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let node = Forge::builder().config(config).listener(listener).build()?.start().await?;
    let base = format!("http://{}", node.local_addr().ok_or("the node has no gateway")?);

    // The webhook receiver.
    let seen: Seen = Arc::default();
    let app = Router::new().route("/hook", post(receive)).with_state(seen.clone());
    let hooks = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hook", hooks.local_addr()?);
    let receiver = tokio::spawn(async move { axum::serve(hooks, app).await });

    let http = reqwest::Client::builder().pool_max_idle_per_host(args.connections + args.watchers).build()?;
    let operator = ApiKeys::new(db.pool().clone()).create(NewApiKey::named("ops").with_role("forge:admin")).await?.key;
    let mut keys = Vec::new();
    for i in 0..args.clients.max(1) {
        let client: Value = http
            .post(format!("{base}/v1/clients"))
            .bearer_auth(&operator)
            .json(&json!({ "name": format!("client-{i}") }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = client["id"].as_str().ok_or("no client id")?;
        let key: Value = http
            .post(format!("{base}/v1/clients/{id}/keys"))
            .bearer_auth(&operator)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let key = key["key"].as_str().ok_or("no key")?.to_owned();
        http.post(format!("{base}/v1/webhooks"))
            .bearer_auth(&key)
            .json(&json!({ "url": hook_url, "events": ["job.succeeded"] }))
            .send()
            .await?
            .error_for_status()?;
        keys.push(key);
    }
    let keys: Arc<Vec<String>> = Arc::new(keys);

    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..args.connections.max(1) {
        let (http, base, keys, acked) = (http.clone(), base.clone(), keys.clone(), acked.clone());
        let repeat_share = args.repeat_share;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors: HashMap<String, usize> = HashMap::new();
            let (mut mismatched, mut repeats) = (0usize, 0usize);
            let mut mine: Vec<(usize, u64, i64)> = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                // A repeat of one of this connection's earlier submissions, or a new one.
                let repeat = !mine.is_empty() && (n as f64 * repeat_share).fract() + repeat_share >= 1.0;
                let (client, seq, first) = if repeat {
                    let (client, seq, id) = mine[(n as usize * 7) % mine.len()];
                    (client, seq, Some(id))
                } else {
                    ((c + n as usize) % keys.len(), n, None)
                };
                n += 1;
                let key = format!("c{c}-{seq}");
                let sent = Instant::now();
                let answer = http
                    .post(format!("{base}/v1/jobs"))
                    .bearer_auth(&keys[client])
                    .header("idempotency-key", &key)
                    .json(&json!({ "kind": "bench_api_work", "args": { "n": seq } }))
                    .send()
                    .await;
                let id = match answer {
                    Ok(r) if r.status().is_success() => r.json::<Value>().await.ok().and_then(|v| v["id"].as_i64()),
                    Ok(r) => {
                        *errors.entry(r.status().as_u16().to_string()).or_insert(0) += 1;
                        continue;
                    }
                    Err(e) => {
                        let what = if e.is_timeout() { "timeout" } else { "connection" };
                        *errors.entry(what.to_owned()).or_insert(0) += 1;
                        continue;
                    }
                };
                let Some(id) = id else {
                    *errors.entry("unreadable".to_owned()).or_insert(0) += 1;
                    continue;
                };
                latencies.push(sent.elapsed());
                match first {
                    Some(first) => {
                        repeats += 1;
                        if first != id {
                            mismatched += 1;
                        }
                    }
                    None => {
                        mine.push((client, seq, id));
                        acked.lock().expect("acked").push(Acked { key: format!("{client}:{key}"), id });
                    }
                }
            }
            (latencies, errors, mismatched, repeats)
        }));
    }
    // SSE watchers: each follows the newest acknowledged job until its stream ends.
    let mut watchers = Vec::new();
    for w in 0..if args.submit_only { 0 } else { args.watchers } {
        let (http, base, keys, acked) = (http.clone(), base.clone(), keys.clone(), acked.clone());
        watchers.push(tokio::spawn(async move {
            let mut completed = 0usize;
            while Instant::now() < deadline {
                let latest = acked.lock().expect("acked").iter().rev().nth(w).map(|a| (a.key.clone(), a.id));
                let Some((key, id)) = latest else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let client: usize = key.split(':').next().and_then(|c| c.parse().ok()).unwrap_or(0);
                let response = http
                    .get(format!("{base}/v1/jobs/{id}/events"))
                    .bearer_auth(&keys[client])
                    .header("accept", "text/event-stream")
                    .send()
                    .await;
                if let Ok(r) = response
                    && let Ok(text) = r.text().await
                    && text.contains("job.succeeded")
                {
                    completed += 1;
                }
            }
            completed
        }));
    }

    let mut latencies = Vec::new();
    let mut errors: HashMap<String, usize> = HashMap::new();
    let (mut mismatched, mut repeats) = (0usize, 0usize);
    for task in tasks {
        let (l, e, m, r) = task.await?;
        latencies.extend(l);
        for (what, n) in e {
            *errors.entry(what).or_insert(0) += n;
        }
        mismatched += m;
        repeats += r;
    }
    let elapsed = started.elapsed();
    let mut sse_completed = 0;
    for watcher in watchers {
        sse_completed += watcher.await?;
    }
    latencies.sort();
    let acked = std::mem::take(&mut *acked.lock().expect("acked"));
    let submitted = acked.len();

    // Wait for every job to finish and every webhook to arrive (at most two minutes).
    let wait = Instant::now() + Duration::from_secs(120);
    let pool = db.pool().clone();
    loop {
        let done: i64 =
            sqlx::query_scalar("select count(*) from forge_jobs where kind = 'bench_api_work' and state = 'completed'")
                .fetch_one(&pool)
                .await?;
        let delivered = seen.lock().expect("seen").len();
        if args.submit_only || (done as usize >= submitted && delivered >= submitted) || Instant::now() > wait {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let in_table: i64 =
        sqlx::query_scalar("select count(*) from forge_jobs where kind = 'bench_api_work'").fetch_one(&pool).await?;
    let ids: Vec<i64> = acked.iter().map(|a| a.id).collect();
    let succeeded: i64 = sqlx::query_scalar(if args.submit_only {
        "select count(*) from forge_jobs where id = any($1) and kind = 'bench_api_work'"
    } else {
        "select count(*) from forge_jobs where id = any($1) and kind = 'bench_api_work' and state = 'completed'"
    })
    .bind(&ids)
    .fetch_one(&pool)
    .await?;
    let distinct_ids = ids.iter().collect::<HashSet<_>>().len();
    let seen = seen.lock().expect("seen").clone();
    let duplicated = seen.values().filter(|ids| ids.len() > 1).count();
    node.stop().await?;
    receiver.abort();
    Ok(json!({
        "bench": "api",
        "submit_only": args.submit_only,
        "seconds": args.seconds,
        "clients": args.clients,
        "connections": args.connections,
        "submitted": submitted,
        "repeats": repeats,
        "errors": errors.values().sum::<usize>(),
        "errors_by_status": errors,
        "duplicates_created": (in_table as usize).saturating_sub(distinct_ids) + (submitted - distinct_ids) + mismatched,
        "lost": submitted.saturating_sub(succeeded as usize),
        "webhooks_delivered": seen.len(),
        "webhooks_duplicated_without_same_id": duplicated,
        "sse_streams_completed": sse_completed,
        "submit_p50_ms": ms(quantile(&latencies, 0.5)),
        "submit_p99_ms": ms(quantile(&latencies, 0.99)),
        "submit_per_s": ((submitted + repeats) as f64 / elapsed.as_secs_f64()).round(),
    }))
}

/// The webhook receiver: records each event's `webhook-id`.
async fn receive(
    axum::extract::State(seen): axum::extract::State<Seen>,
    headers: HeaderMap,
    body: String,
) -> &'static str {
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if let Ok(event) = serde_json::from_str::<Value>(&body)
        && let Some(event_id) = event["data"]["event_id"].as_i64()
    {
        seen.lock().expect("seen").entry(event_id).or_default().insert(id);
    }
    "ok"
}
