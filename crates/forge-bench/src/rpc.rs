//! `forge-bench rpc` and `forge-bench rpc-floor`: the same trivial query served by Forge's
//! gateway (`POST /rpc/bench_echo`: routing, request id, trace span, auth check, metrics,
//! argument parsing, a read-only pool) and by a bare axum handler running the same SQL with
//! sqlx, both loaded by `--connections` keep-alive clients for `--seconds`. The ratio of the two
//! is the gateway's overhead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use forge::config::{Role, Roles};
use forge::prelude::*;
use forge::testing::TestDatabase;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};

use crate::stats::{CpuTime, Report};
use crate::stats::{alternate, median, ms, quantile, round};

/// Where both servers answer.
const PATH: &str = "/rpc/bench_echo";

/// The SQL both servers run.
const ECHO_SQL: &str = "select $1::int4";

/// The query `forge-bench rpc` calls.
#[forge::query(public)]
async fn bench_echo(ctx: &QueryContext, n: i32) -> Result<i32, ForgeError> {
    Ok(sqlx::query_scalar(ECHO_SQL).bind(n).fetch_one(ctx.db()).await?)
}

/// Forge's gateway.
pub(crate) async fn run(seconds: u64, connections: usize) -> Report {
    let db = TestDatabase::new().await?;
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Gateway, Role::Function]).ok_or("no roles")?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let node = Forge::builder().config(config.clone()).listener(listener).build()?.start().await?;
    let addr = node.local_addr().ok_or("the node has no gateway")?;
    let report = load("rpc", &format!("http://{addr}{PATH}"), seconds, connections).await;
    let unstored = node.telemetry().unstored_request_spans();
    node.stop().await?;
    // What telemetry kept: request spans stored, and plain ones beyond `request_spans` per
    // second that were counted instead.
    let stored: i64 =
        sqlx::query_scalar("select count(*) from forge_traces where name = 'forge.http'").fetch_one(db.pool()).await?;
    report.map(|mut r| {
        r["pool_size"] = config.database.pool_size.get().into();
        r["request_spans_stored"] = stored.into();
        r["request_spans_unstored"] = unstored.into();
        r
    })
}

/// A bare axum handler over sqlx, with a pool of the node's default size, at the same path as
/// Forge's (`/rpc/bench_echo`: the clients send the same bytes and parse the same URL, about
/// 1,200 instructions more per request than the `/echo` it served until 2026-12-06). The pool
/// does not ping a connection each time it is taken (sqlx's default does, one more round trip
/// per request; Forge's pools ping only a connection idle for a second): the floor is the
/// leanest handler, not the default one. It runs its statement on the pool (`&PgPool`), which
/// sqlx pings as it takes the connection back; with `kept`, the handler hands its connections
/// from one request to the next itself (no such ping, as Forge's queries since 2026-12-07).
pub(crate) async fn floor(seconds: u64, connections: usize, kept: bool) -> Report {
    let db = TestDatabase::new().await?;
    let pool_size = db.config().database.pool_size.get();
    let pool = PgPoolOptions::new().max_connections(pool_size).test_before_acquire(false).connect(db.url()).await?;
    let app = if kept {
        let kept = Arc::new(Kept::default());
        for _ in 0..pool_size {
            kept.put(pool.acquire().await?);
        }
        Router::new().route(PATH, post(echo_kept)).with_state(kept)
    } else {
        Router::new().route(PATH, post(echo)).with_state(pool.clone())
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let report = load("rpc-floor", &format!("http://{addr}{PATH}"), seconds, connections).await;
    server.abort();
    pool.close().await;
    report.map(|mut r| {
        r["pool_size"] = pool_size.into();
        r["kept"] = kept.into();
        r
    })
}

async fn echo(State(pool): State<PgPool>, Json(n): Json<i32>) -> Result<Json<serde_json::Value>, String> {
    let n: i32 = sqlx::query_scalar(ECHO_SQL).bind(n).fetch_one(&pool).await.map_err(|e| e.to_string())?;
    Ok(Json(serde_json::json!({ "data": n })))
}

/// `rpc-floor --kept`'s connections, each handed from one request to the next.
#[derive(Default)]
struct Kept {
    idle: std::sync::Mutex<Vec<PoolConnection<Postgres>>>,
    put: tokio::sync::Notify,
}

impl Kept {
    fn put(&self, conn: PoolConnection<Postgres>) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        self.put.notify_one();
    }

    async fn take(&self) -> PoolConnection<Postgres> {
        loop {
            if let Some(conn) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
                return conn;
            }
            self.put.notified().await;
        }
    }
}

async fn echo_kept(State(kept): State<Arc<Kept>>, Json(n): Json<i32>) -> Result<Json<serde_json::Value>, String> {
    let mut conn = kept.take().await;
    let n: i32 = sqlx::query_scalar(ECHO_SQL).bind(n).fetch_one(&mut *conn).await.map_err(|e| e.to_string())?;
    kept.put(conn);
    Ok(Json(serde_json::json!({ "data": n })))
}

/// `connections` clients post `7` to `url` in a loop for `seconds`.
async fn load(bench: &str, url: &str, seconds: u64, connections: usize) -> Report {
    let client = reqwest::Client::builder().pool_max_idle_per_host(connections).build()?;
    // Warm up: connections, prepared statements, the pools.
    for _ in 0..connections {
        client.post(url).header("content-type", "application/json").body("7").send().await?.error_for_status()?;
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let url: Arc<str> = url.into();
    let cpu = CpuTime::now();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let ok = match client.post(&*url).header("content-type", "application/json").body("7").send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                if ok {
                    latencies.push(sent.elapsed());
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    let (machine_us, process_us) = CpuTime::per_unit_since(cpu, latencies.len());
    latencies.sort();
    Ok(serde_json::json!({
        "bench": bench,
        "seconds": seconds,
        "connections": connections,
        "requests": latencies.len(),
        "errors": errors,
        "req_per_s": (latencies.len() as f64 / elapsed.as_secs_f64()).round(),
        "p50_ms": ms(quantile(&latencies, 0.5)),
        "p99_ms": ms(quantile(&latencies, 0.99)),
        // CPU per request, steadier than the rate on a shared machine: the whole machine's
        // (Postgres included) and this process's (server and load generator).
        "machine_us_per_req": machine_us,
        "process_us_per_req": process_us,
    }))
}

/// `rpc --pairs N`: `rpc-floor` and `rpc` alternately (the order flips every pair, so neither
/// always runs right after the other on a warmer machine), each in its own process with the
/// same `seconds` and `connections`; prints every run, then `{"bench":"rpc-vs-floor",
/// "ratio_median", "ratios", "rpc_median", "floor_median", "p99_ms_median", "floor_p99_ms_median",
/// "machine_us_per_req_median", "floor_machine_us_per_req_median"}`. The ratio of each pair's
/// rates is what the gateway keeps of the floor's throughput; CPU per request is the steadier
/// view on a shared machine.
pub(crate) async fn versus_floor(pairs: usize, seconds: u64, connections: usize) -> Report {
    let (secs, conns) = (seconds.to_string(), connections.to_string());
    let args = |bench: &str| -> Vec<String> {
        [bench, "--seconds", &secs, "--connections", &conns].map(String::from).to_vec()
    };
    let (forge_args, floor_args) = (args("rpc"), args("rpc-floor"));
    let (floor, forge): (Vec<serde_json::Value>, Vec<serde_json::Value>) =
        alternate(pairs, &floor_args, &forge_args).await?.into_iter().unzip();
    let rate = |run: &serde_json::Value| run["req_per_s"].as_f64().unwrap_or(0.0);
    let ratios: Vec<f64> = floor.iter().zip(&forge).map(|(f, r)| rate(r) / rate(f).max(1.0)).collect();
    let median_of = |runs: &[serde_json::Value], field: &str, places: i32| {
        round(median(runs.iter().filter_map(|r| r[field].as_f64()).collect()), places)
    };
    Ok(serde_json::json!({
        "bench": "rpc-vs-floor",
        "pairs": pairs,
        "seconds": seconds,
        "connections": connections,
        "ratio_median": round(median(ratios.clone()), 3),
        "ratios": ratios.iter().map(|r| round(*r, 3)).collect::<Vec<_>>(),
        "rpc_median": median_of(&forge, "req_per_s", 0),
        "floor_median": median_of(&floor, "req_per_s", 0),
        "p99_ms_median": median_of(&forge, "p99_ms", 2),
        "floor_p99_ms_median": median_of(&floor, "p99_ms", 2),
        "machine_us_per_req_median": median_of(&forge, "machine_us_per_req", 1),
        "floor_machine_us_per_req_median": median_of(&floor, "machine_us_per_req", 1),
    }))
}
