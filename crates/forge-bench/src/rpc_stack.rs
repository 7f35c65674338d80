//! `forge-bench rpc-stack`: the gateway's own cost per request, without sockets or a database.
//!
//! `rpc` against `rpc-floor` is the figure users see, but on a shared two-core machine its runs
//! swing by a third, which hides a change of a microsecond or two per request. Here the same
//! request (`POST /rpc/{function}` with body `7`, to a query that answers without SQL) is handed
//! straight to Forge's router (request id, trace span, load shedding, timeout, CORS, body limit,
//! auth, registry, metrics, access line, telemetry's span budget) and to a bare axum router with
//! the same handler, in alternating slices of `--batch` requests on one thread, so that both
//! see the same machine. The difference of the medians is what the gateway adds per request.

use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use axum::routing::post;
use axum::{Json, Router};
use forge::gateway::GatewayState;
use forge::observability::{StoreFilter, TelemetryLayer};
use forge::prelude::*;
use sqlx::postgres::PgPoolOptions;
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

use crate::stats::Report;

/// The query `rpc-stack` calls: no SQL, so only the gateway is measured.
#[forge::query(public)]
async fn bench_stack_echo(_ctx: &QueryContext, n: i32) -> Result<i32, ForgeError> {
    Ok(n)
}

async fn bare_echo(Json(n): Json<i32>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "data": n }))
}

/// `batch` requests through `router`, one after another: the time per request.
async fn slice_of(router: Router, batch: usize) -> Result<f64, String> {
    let request = || {
        Request::post("/rpc/bench_stack_echo")
            .header("content-type", "application/json")
            .body(Body::from("7"))
            .expect("a valid request")
    };
    let started = Instant::now();
    for _ in 0..batch {
        let response = router.clone().oneshot(request()).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("/rpc/bench_stack_echo answered {}", response.status()));
        }
        axum::body::to_bytes(response.into_body(), usize::MAX).await.map_err(|e| e.to_string())?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e9 / batch as f64)
}

/// `rounds` slices of `batch` requests through each router, alternating; with `threads` above
/// one, that many OS threads send their slices at once, each on a runtime of its own.
pub(crate) async fn run(rounds: usize, batch: usize, threads: usize) -> Report {
    // What `Forge::start` installs when the process has no subscriber: the telemetry layer.
    let filter = StoreFilter::new("info")?;
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(TelemetryLayer::new().filtered(filter)),
    )?;
    let config = forge::ForgeConfig::default();
    // Never connected: the query runs no SQL and the call carries no credentials.
    let pool = PgPoolOptions::new().connect_lazy("postgres://forge-bench@127.0.0.1:1/unused")?;
    let state = GatewayState::with_config(pool, forge::db::Migrator::forge()?, &config);
    let forge_router = forge::gateway::router(state);
    let bare_router = Router::new().route("/rpc/bench_stack_echo", post(bare_echo));
    // `threads` slices at once: the mean of their times per request.
    let slice = async |router: &Router| -> Result<f64, Box<dyn std::error::Error>> {
        if threads == 1 {
            return Ok(slice_of(router.clone(), batch).await?);
        }
        // One OS thread each, with a runtime of its own: the slices surely run on both cores
        // at once (tasks of one runtime may well share a worker).
        let times = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..threads)
                .map(|_| {
                    let router = router.clone();
                    scope.spawn(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .map_err(|e| e.to_string())?;
                        runtime.block_on(slice_of(router, batch))
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().map_err(|_| "a slice panicked".to_owned())?).collect::<Vec<_>>()
        });
        let mut sum = 0.0;
        for time in times {
            sum += time?;
        }
        Ok(sum / threads as f64)
    };
    // Warm up both.
    slice(&forge_router).await?;
    slice(&bare_router).await?;
    let (mut forge_ns, mut bare_ns) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds {
        forge_ns.push(slice(&forge_router).await?);
        bare_ns.push(slice(&bare_router).await?);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (forge, bare) = (median(&mut forge_ns), median(&mut bare_ns));
    Ok(serde_json::json!({
        "bench": "rpc-stack",
        "rounds": rounds,
        "batch": batch,
        "threads": threads,
        "forge_ns_per_req": forge.round(),
        "bare_ns_per_req": bare.round(),
        "overhead_ns_per_req": (forge - bare).round(),
    }))
}
