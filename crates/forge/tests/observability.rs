//! Observability end to end, against real PostgreSQL: logs carry their job and trace, a
//! request that dispatches a job is one trace (one stored span per `/rpc` call; a 5xx's access
//! line stored), metrics after a known workload, the node riding
//! out a database outage, retention, and the indexes behind the query API.

use std::time::{Duration, Instant};

use chrono::Utc;
use forge::config::{Role, Roles};
use forge::observability::{LogQuery, SeriesQuery, enforce_retention, trace};
use forge::prelude::*;
use forge::testing::TestDatabase;
use serde::{Deserialize, Serialize};
use serde_json::json;

mod common;

#[derive(Debug, Serialize, Deserialize)]
struct Charge {
    amount: i64,
}

#[forge::job]
async fn charge_card(_ctx: &JobContext, args: Charge) -> Result<(), JobError> {
    tracing::info!(amount = args.amount, "charging card");
    forge::metrics::counter!("cards_charged_total", "bank" => "acme").increment(1);
    tracing::info_span!("bank.call", bank = "acme").in_scope(|| tracing::warn!("bank answered slowly"));
    Ok(())
}

#[forge::job(max_attempts = 1)]
async fn decline_card(_ctx: &JobContext, _args: Charge) -> Result<(), JobError> {
    Err(JobError::retry("card declined"))
}

#[forge::job(max_attempts = 3, backoff(fixed, base = "10ms", jitter = 0.0))]
async fn flaky_parent(ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    tracing::info!(attempt = ctx.attempt(), "parent attempt");
    if ctx.attempt() == 1 {
        return Err(JobError::retry("first try fails"));
    }
    FollowUp::dispatch(ctx, ()).await.map_err(|e| JobError::retry(e.to_string()))?;
    Ok(())
}

#[forge::job]
async fn follow_up(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    tracing::info!("following up");
    Ok(())
}

/// A query that fails on the server's side: a 500.
#[forge::query(public)]
async fn broken_report(_ctx: &QueryContext, _args: ()) -> Result<i64, ForgeError> {
    Err(ForgeError::Internal("the report is broken".to_owned()))
}

/// The plainest request: answers at once, logs nothing, starts nothing.
#[forge::query(public)]
async fn ping(_ctx: &QueryContext, _args: ()) -> Result<i64, ForgeError> {
    Ok(1)
}

/// A request that logs.
#[forge::query(public)]
async fn noisy_ping(_ctx: &QueryContext, _args: ()) -> Result<i64, ForgeError> {
    tracing::info!("pinged");
    Ok(1)
}

/// A request slower than the tests' `slow_request` (50 ms).
#[forge::query(public)]
async fn slow_ping(_ctx: &QueryContext, _args: ()) -> Result<i64, ForgeError> {
    tokio::time::sleep(Duration::from_millis(80)).await;
    Ok(1)
}

/// A node with every role and telemetry written every 50 ms.
async fn node(db: &TestDatabase, tweak: impl FnOnce(&mut ForgeConfig)) -> RunningForge {
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Worker, Role::Scheduler]).expect("roles");
    config.worker.poll_interval = "50ms".parse().expect("duration");
    config.observability.flush_interval = "50ms".parse().expect("duration");
    config.observability.metrics_interval = "100ms".parse().expect("duration");
    tweak(&mut config);
    Forge::builder().config(config).build().expect("build").start().await.expect("start")
}

async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn job_state(pool: &sqlx::PgPool, id: JobId) -> String {
    sqlx::query_scalar("select state from forge_jobs where id = $1").bind(id.0).fetch_one(pool).await.expect("state")
}

#[tokio::test]
async fn a_jobs_logs_carry_its_id_and_trace() {
    let db = TestDatabase::new().await.expect("db");
    let forge = node(&db, |_| {}).await;
    let id = ChargeCard::dispatch(&forge, Charge { amount: 4200 }).await.expect("dispatch");
    wait_for("the job to complete", async || (job_state(db.pool(), id).await == "completed").then_some(())).await;

    let page = wait_for("the job's logs", async || {
        let page = LogQuery::default().job(id.0).fetch(db.pool()).await.expect("logs");
        (page.entries.len() >= 2).then_some(page)
    })
    .await;
    let charging = page.entries.iter().find(|e| e.message == "charging card").expect("the job's own line");
    assert_eq!(charging.level, "info");
    assert_eq!(charging.fields["amount"], 4200);
    assert_eq!(charging.node_id, forge.node_id());
    assert_eq!(charging.target, "observability");
    let trace_id = charging.trace_id.expect("a trace id");
    assert_eq!(trace_id.to_string().len(), 32);
    // A line from a span inside the job still carries the job and its trace.
    let slow = page.entries.iter().find(|e| e.message == "bank answered slowly").expect("nested line");
    assert_eq!((slow.level.as_str(), slow.trace_id), ("warn", Some(trace_id)));

    // Filters: by level, by text, by trace.
    let warnings = LogQuery::default().job(id.0).min_level("warn").fetch(db.pool()).await.expect("logs");
    assert_eq!(warnings.entries.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(), ["bank answered slowly"]);
    let by_text = LogQuery::default().job(id.0).text("CHARGING").fetch(db.pool()).await.expect("logs");
    assert_eq!(by_text.entries.len(), 1);
    let by_trace = LogQuery::default().trace(trace_id).fetch(db.pool()).await.expect("logs");
    assert!(by_trace.entries.len() >= 2);

    // The trace: the attempt's span with the bank call inside it.
    let trace = wait_for("the job's spans", async || {
        trace(db.pool(), trace_id).await.expect("trace").filter(|t| t.span_count >= 2)
    })
    .await;
    assert_eq!(trace.roots.len(), 1, "{trace:#?}");
    let job = &trace.roots[0];
    assert_eq!((job.name.as_str(), job.kind.as_str(), job.status.as_str()), ("forge.job", "consumer", "ok"));
    assert_eq!(job.job_id, Some(id.0));
    assert_eq!(job.attributes["kind"], "charge_card");
    assert_eq!(job.attributes["outcome"], "completed");
    assert_eq!(job.children.len(), 1);
    assert_eq!(job.children[0].name, "bank.call");
    assert_eq!(job.children[0].attributes["bank"], "acme");
    forge.stop().await.expect("stop");
}

#[tokio::test]
async fn every_attempt_and_every_job_a_job_dispatches_is_in_its_trace() {
    let db = TestDatabase::new().await.expect("db");
    let forge = node(&db, |_| {}).await;
    let parent = FlakyParent::dispatch(&forge, ()).await.expect("dispatch");
    wait_for("the parent to complete", async || (job_state(db.pool(), parent).await == "completed").then_some(()))
        .await;
    let child: i64 = wait_for("the child to complete", async || {
        sqlx::query_scalar("select id from forge_jobs where kind = 'follow_up' and state = 'completed'")
            .fetch_optional(db.pool())
            .await
            .expect("child")
    })
    .await;

    // Dispatched outside any trace, the parent's trace is its own; the child continues it.
    let trace_id = forge::observability::TraceId::of_job(parent);
    let trace = wait_for("the dispatch span", async || {
        let t = trace(db.pool(), trace_id).await.expect("trace")?;
        (t.span_count == 4).then_some(t)
    })
    .await;
    assert_eq!(trace.roots.len(), 2, "two attempts: {trace:#?}");
    let (first, second) = (&trace.roots[0], &trace.roots[1]);
    assert_eq!((first.name.as_str(), first.status.as_str()), ("forge.job", "error"));
    assert_eq!(
        (first.attributes["attempt"].as_i64(), first.attributes["outcome"].as_str()),
        (Some(1), Some("retryable"))
    );
    assert_eq!(first.attributes["error"], "first try fails");
    assert_eq!(first.node_id, forge.node_id());
    assert_eq!((second.status.as_str(), second.attributes["outcome"].as_str()), ("ok", Some("completed")));
    assert!(second.started_at >= first.started_at + chrono::Duration::microseconds(first.duration_us));
    let dispatch = &second.children[0];
    assert_eq!((dispatch.name.as_str(), dispatch.job_id), ("forge.dispatch", Some(parent.0)));
    let follow = &dispatch.children[0];
    assert_eq!((follow.name.as_str(), follow.job_id), ("forge.job", Some(child)));
    assert_eq!(follow.attributes["kind"], "follow_up");

    // Each attempt's log line names that attempt's span; the child's names the child's.
    let logs = wait_for("the attempts' log lines", async || {
        let logs = LogQuery::default().trace(trace_id).fetch(db.pool()).await.expect("logs");
        let ours = logs.entries.iter().filter(|e| e.message == "parent attempt" || e.message == "following up");
        (ours.count() == 3).then_some(logs)
    })
    .await;
    let span_of = |message: &str, attempt: i64| {
        logs.entries
            .iter()
            .find(|e| {
                e.message == message && e.fields.get("attempt").and_then(|a| a.as_i64()).is_none_or(|a| a == attempt)
            })
            .and_then(|e| e.span_id)
            .unwrap_or_else(|| panic!("{message:?} of attempt {attempt}: {logs:#?}"))
    };
    assert_eq!(span_of("parent attempt", 1), first.span_id);
    assert_eq!(span_of("parent attempt", 2), second.span_id);
    assert_eq!(span_of("following up", 1), follow.span_id);
    forge.stop().await.expect("stop");
}

#[tokio::test]
async fn log_pages_go_back_in_time_by_keyset() {
    let db = TestDatabase::new().await.expect("db");
    sqlx::query(
        "insert into forge_logs (at, level, target, message, node_id, job_id)
         select now() - make_interval(secs => i), 'info', 't', 'line ' || i, 'n', 7 from generate_series(1, 25) i",
    )
    .execute(db.pool())
    .await
    .expect("rows");
    let first = LogQuery::default().job(7).limit(10).fetch(db.pool()).await.expect("page");
    assert_eq!(first.entries.first().map(|e| e.message.as_str()), Some("line 1"), "newest first");
    let second =
        LogQuery::default().job(7).limit(10).before(first.next.expect("more")).fetch(db.pool()).await.expect("page");
    assert_eq!(second.entries.first().map(|e| e.message.as_str()), Some("line 11"));
    let third =
        LogQuery::default().job(7).limit(10).before(second.next.expect("more")).fetch(db.pool()).await.expect("page");
    assert_eq!(third.entries.len(), 5);
    assert_eq!(third.next, None);
    let none = LogQuery::default().job(7).min_level("loud").fetch(db.pool()).await.expect("page");
    assert!(none.entries.is_empty(), "an unknown level matches nothing");
}

#[tokio::test]
async fn a_request_that_dispatches_a_job_is_one_trace() {
    let db = common::notes_database().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let forge = Forge::builder()
        .config({
            let mut c = db.config();
            c.observability.flush_interval = "50ms".parse().expect("duration");
            c
        })
        .listener(listener)
        .build()
        .expect("build")
        .start()
        .await
        .expect("start");
    let addr = forge.local_addr().expect("gateway");
    let trace_id: forge::observability::TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().expect("trace id");
    let reply = reqwest::Client::new()
        .post(format!("http://{addr}/rpc/create_note"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({ "body": "traced" }))
        .send()
        .await
        .expect("POST");
    assert_eq!(reply.status(), 200);

    let trace = wait_for("the request's and the job's spans", async || {
        let t = trace(db.pool(), trace_id).await.expect("trace")?;
        // Spans are flushed as they close: the request's may land after the job's dispatch.
        let request = t.roots.iter().any(|s| s.name == "forge.http");
        let job = t.spans().iter().any(|s| s.name == "forge.job" && s.attributes["outcome"] == "completed");
        (request && job).then_some(t)
    })
    .await;
    assert_eq!(trace.roots.len(), 1, "{trace:#?}");
    let http = &trace.roots[0];
    assert_eq!((http.name.as_str(), http.kind.as_str()), ("forge.http", "server"));
    assert_eq!(
        http.parent_span_id.map(|p| p.to_string()).as_deref(),
        Some("00f067aa0ba902b7"),
        "the caller's span is the parent"
    );
    assert_eq!(http.attributes["route"], "/rpc/{function}");
    // The function is the request's: named on its span, not stored as a span of its own; the
    // span also says what the access line says.
    assert_eq!(http.function.as_deref(), Some("create_note"));
    assert_eq!(http.attributes["function_kind"], "mutation");
    assert_eq!(http.attributes["path"], "/rpc/create_note");
    assert_eq!(http.attributes["status_code"], 200);
    assert_eq!(http.attributes["method"], "POST");
    assert!(http.attributes["client_ip"].as_str().is_some_and(|ip| ip.starts_with("127.")), "{http:#?}");
    assert!(trace.spans().iter().all(|s| s.name != "forge.function"), "{trace:#?}");
    // The mutation inserted the job in a `forge.dispatch` span; the attempt hangs under it.
    let dispatch = http
        .children
        .iter()
        .find(|s| s.name == "forge.dispatch")
        .unwrap_or_else(|| panic!("the dispatch under the request: {trace:#?}"));
    assert_eq!((dispatch.kind.as_str(), dispatch.function.as_deref()), ("producer", Some("create_note")));
    assert_eq!(
        (dispatch.attributes["kind"].as_str(), dispatch.attributes["count"].as_i64()),
        (Some("index_note"), Some(1))
    );
    let job = dispatch
        .children
        .iter()
        .find(|s| s.name == "forge.job")
        .unwrap_or_else(|| panic!("the job under the dispatch: {trace:#?}"));
    assert_eq!((job.kind.as_str(), job.status.as_str()), ("consumer", "ok"));
    assert_eq!(job.attributes["kind"], "index_note");
    assert_eq!(job.attributes["outcome"], "completed");
    let job_id = job.job_id.expect("the attempt's job");
    assert_eq!(dispatch.attributes["jobs"], json!([[job_id, job_id]]));
    assert_eq!(job.node_id, forge.node_id());

    // A 500's access line is stored (at warn), in its request's trace, with its function.
    let failed: forge::observability::TraceId = "5bf92f3577b34da6a3ce929d0e0e4737".parse().expect("trace id");
    let reply = reqwest::Client::new()
        .post(format!("http://{addr}/rpc/broken_report"))
        .header("traceparent", format!("00-{failed}-00f067aa0ba902b7-01"))
        .json(&json!(null))
        .send()
        .await
        .expect("POST");
    assert_eq!(reply.status(), 500);
    let line = wait_for("the 500's access line in its trace", async || {
        let logs = LogQuery::default().trace(failed).fetch(db.pool()).await.expect("logs");
        logs.entries.into_iter().find(|e| e.target == "forge::access")
    })
    .await;
    assert_eq!((line.level.as_str(), line.function.as_deref()), ("warn", Some("broken_report")));
    assert_eq!(line.fields["status"], 500);
    // The 200's line was written earlier and would be stored by now: its span told it all.
    let logs = LogQuery::default().trace(trace_id).fetch(db.pool()).await.expect("logs");
    assert!(logs.entries.iter().all(|e| e.target != "forge::access"), "{logs:#?}");
    forge.stop().await.expect("stop");
}

/// A gateway node over the notes database storing `request_spans`, with `slow_request` 50 ms.
async fn gateway(db: &TestDatabase, request_spans: &str) -> RunningForge {
    let mut config = db.config();
    config.observability.flush_interval = "50ms".parse().expect("duration");
    config.observability.slow_request = "50ms".parse().expect("duration");
    config.observability.request_spans = toml::from_str::<toml::Table>(&format!("v = {request_spans}")).expect("toml")
        ["v"]
        .clone()
        .try_into()
        .expect("request_spans");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    Forge::builder().config(config).listener(listener).build().expect("build").start().await.expect("start")
}

/// Calls `function` with a `traceparent` of `trace` whose sampled flag is `sampled`.
async fn call(forge: &RunningForge, function: &str, body: serde_json::Value, trace: u128, sampled: bool) -> u16 {
    let addr = forge.local_addr().expect("gateway");
    let flags = if sampled { "01" } else { "00" };
    reqwest::Client::new()
        .post(format!("http://{addr}/rpc/{function}"))
        .header("traceparent", format!("00-{trace:032x}-00f067aa0ba902b7-{flags}"))
        .json(&body)
        .send()
        .await
        .expect("POST")
        .status()
        .as_u16()
}

/// Stored request spans of `function`, by the second they started in.
async fn request_spans_by_second(pool: &sqlx::PgPool, function: &str) -> Vec<i64> {
    sqlx::query_scalar(
        "select count(*) from forge_traces where name = 'forge.http' and function = $1
         group by date_trunc('second', started_at) order by 1",
    )
    .bind(function)
    .fetch_all(pool)
    .await
    .expect("spans")
}

/// Waits until the span of the request traced `trace` is stored.
async fn wait_for_request_span(pool: &sqlx::PgPool, trace_id: u128) -> forge::observability::Trace {
    let id: forge::observability::TraceId = format!("{trace_id:032x}").parse().expect("trace id");
    wait_for("the request's span", async || trace(pool, id).await.expect("trace").filter(|t| !t.roots.is_empty())).await
}

#[tokio::test]
async fn plain_requests_beyond_the_budget_are_counted_and_the_rest_always_stored() {
    let db = common::notes_database().await;
    let forge = gateway(&db, "0").await;
    // Five plain requests: no span stored, each counted.
    for i in 0..5 {
        assert_eq!(call(&forge, "ping", json!(null), 0x1000 + i, false).await, 200);
    }
    wait_for("five unstored requests", async || (forge.telemetry().unstored_request_spans() == 5).then_some(())).await;
    // Each of these is stored although the budget is 0: the caller samples the trace; the
    // request logged; it was slow; it failed; it dispatched a job.
    assert_eq!(call(&forge, "ping", json!(null), 0x2001, true).await, 200);
    assert_eq!(call(&forge, "noisy_ping", json!(null), 0x2002, false).await, 200);
    assert_eq!(call(&forge, "slow_ping", json!(null), 0x2003, false).await, 200);
    assert_eq!(call(&forge, "broken_report", json!(null), 0x2004, false).await, 500);
    assert_eq!(call(&forge, "create_note", json!({ "body": "kept" }), 0x2005, false).await, 200);
    for (trace, function) in [
        (0x2001, "ping"),
        (0x2002, "noisy_ping"),
        (0x2003, "slow_ping"),
        (0x2004, "broken_report"),
        (0x2005, "create_note"),
    ] {
        let t = wait_for_request_span(db.pool(), trace).await;
        assert_eq!((t.roots.len(), t.roots[0].function.as_deref()), (1, Some(function)), "{t:#?}");
        assert!(t.roots[0].attributes.get("trace_sampled").is_none(), "not an attribute: {t:#?}");
        if function == "create_note" {
            assert!(t.roots[0].children.iter().any(|s| s.name == "forge.dispatch"), "{t:#?}");
        }
    }
    // Written in the order they closed: the plain ones would be there by now.
    assert_eq!(request_spans_by_second(db.pool(), "ping").await, [1], "only the sampled ping");
    assert_eq!(forge.telemetry().unstored_request_spans(), 5);
    forge.stop().await.expect("stop");
}

#[tokio::test]
async fn a_budget_stores_that_many_plain_requests_a_second_and_all_stores_every_one() {
    for (budget, each_second) in [("3", 3), ("\"all\"", i64::MAX)] {
        let db = common::notes_database().await;
        let forge = gateway(&db, budget).await;
        for i in 0..40 {
            assert_eq!(call(&forge, "ping", json!(null), 0x1000 + i, false).await, 200);
        }
        assert_eq!(call(&forge, "noisy_ping", json!(null), 0x2000, false).await, 200);
        wait_for_request_span(db.pool(), 0x2000).await;
        let stored = request_spans_by_second(db.pool(), "ping").await;
        let total: i64 = stored.iter().sum();
        let unstored = forge.telemetry().unstored_request_spans();
        assert_eq!(total + unstored as i64, 40, "{budget}: every request stored or counted ({stored:?})");
        if each_second == i64::MAX {
            assert_eq!(unstored, 0, "{budget}");
        } else {
            assert!(stored.iter().all(|&n| n <= each_second) && total >= 1 && unstored > 0, "{budget}: {stored:?}");
        }
        forge.stop().await.expect("stop");
    }
}

#[tokio::test]
async fn metrics_after_a_known_workload_are_exact() {
    let db = TestDatabase::new().await.expect("db");
    let forge = node(&db, |_| {}).await;
    let mut ids = Vec::new();
    for amount in 0..5 {
        ids.push(ChargeCard::dispatch(&forge, Charge { amount }).await.expect("dispatch"));
    }
    for amount in 0..2 {
        ids.push(DeclineCard::dispatch(&forge, Charge { amount }).await.expect("dispatch"));
    }
    wait_for("every job to finish", async || {
        let finished: i64 =
            sqlx::query_scalar("select count(*) from forge_jobs where state in ('completed', 'discarded')")
                .fetch_one(db.pool())
                .await
                .expect("count");
        (finished == 7).then_some(())
    })
    .await;
    wait_for("leadership", async || forge.is_leader().then_some(())).await;
    // A metrics write while leading: the gauges (leadership, memory) are stored.
    wait_for("the leader gauge in forge_metrics", async || {
        let leader: Option<f64> =
            sqlx::query_scalar("select max(value) from forge_metrics where name = 'forge_leader'")
                .fetch_one(db.pool())
                .await
                .expect("leader");
        (leader == Some(1.0)).then_some(())
    })
    .await;
    let m = forge.telemetry().metrics().clone();
    // Stopping writes the last interval.
    forge.stop().await.expect("stop");

    let total = async |name: &str, kind: &str| -> f64 {
        sqlx::query_scalar(
            "select coalesce(sum(value), 0) from forge_metrics where name = $1 and labels ->> 'kind' = $2",
        )
        .bind(name)
        .bind(kind)
        .fetch_one(db.pool())
        .await
        .expect("sum")
    };
    assert_eq!(total("forge_jobs_enqueued_total", "charge_card").await, 5.0);
    assert_eq!(total("forge_jobs_enqueued_total", "decline_card").await, 2.0);
    assert_eq!(total("forge_jobs_completed_total", "charge_card").await, 5.0);
    assert_eq!(total("forge_jobs_failed_total", "decline_card").await, 2.0);
    assert_eq!(total("forge_jobs_discarded_total", "decline_card").await, 2.0);
    assert_eq!(total("forge_jobs_completed_total", "decline_card").await, 0.0);
    assert_eq!(m.counter("forge_jobs_completed_total", &[("kind", "charge_card"), ("queue", "default")]), 5);
    // The application's own counter, through the `metrics` facade.
    let charged: f64 = sqlx::query_scalar(
        "select sum(value) from forge_metrics where name = 'cards_charged_total' and labels = '{\"bank\": \"acme\"}'",
    )
    .fetch_one(db.pool())
    .await
    .expect("sum");
    assert_eq!(charged, 5.0);

    // Durations: 5 observations, each within the histogram's bounds, and the series API agrees.
    let series = SeriesQuery::new("forge_job_duration_seconds")
        .range(Utc::now() - chrono::Duration::minutes(5), Utc::now())
        .step(Duration::from_secs(3600))
        .label("kind", "charge_card")
        .fetch(db.pool())
        .await
        .expect("series");
    assert_eq!(series.len(), 1, "{series:#?}");
    let count: f64 = series[0].points.iter().map(|p| p.value).sum();
    assert_eq!(count, 5.0);
    let point = &series[0].points[0];
    assert_eq!(point.counts.last().copied(), Some(5), "every attempt took under 30 s: {point:?}");
    assert!(point.p99.is_some_and(|p| p <= 30.0));
    assert!(point.sum >= 0.0 && point.sum < 5.0 * 30.0);

    let counters = SeriesQuery::new("forge_jobs_failed_total").fetch(db.pool()).await.expect("series");
    assert_eq!(counters.iter().flat_map(|s| &s.points).map(|p| p.value).sum::<f64>(), 2.0);

    // Gauges: the machine's memory and the node's leadership were sampled.
    let memory: f64 =
        sqlx::query_scalar("select max(value) from forge_metrics where name = 'forge_system_memory_total_bytes'")
            .fetch_one(db.pool())
            .await
            .expect("memory");
    assert!(memory > 0.0);
    let leader: f64 = sqlx::query_scalar("select max(value) from forge_metrics where name = 'forge_leader'")
        .fetch_one(db.pool())
        .await
        .expect("leader");
    assert_eq!(leader, 1.0);
    let pickups: f64 =
        sqlx::query_scalar("select sum(value) from forge_metrics where name = 'forge_job_pickup_seconds'")
            .fetch_one(db.pool())
            .await
            .expect("pickups");
    assert_eq!(pickups, 7.0);
}

/// Set by `outage_job` once it has logged everything.
static OUTAGE_JOB_DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static OUTAGE_GO: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[forge::job(queue = "outage")]
async fn outage_job(ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    if ctx.attempt() == 1 {
        OUTAGE_GO.notified().await;
    }
    for i in 0..200 {
        tracing::info!(i, "working through the outage");
    }
    OUTAGE_JOB_DONE.store(true, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn the_node_rides_out_a_database_outage_and_logging_resumes() {
    let db = TestDatabase::new().await.expect("db");
    let forge = node(&db, |c| {
        c.observability.buffer_size = std::num::NonZeroUsize::new(50).expect("50");
        c.worker.lease = "3s".parse().expect("duration");
        c.worker.queues.insert("outage".to_owned(), Default::default());
    })
    .await;
    let id = OutageJob::dispatch(&forge, ()).await.expect("dispatch");
    wait_for("the job to be claimed", async || (job_state(db.pool(), id).await == "running").then_some(())).await;

    // The database goes away: no new connections, and the node's are cut.
    db.cut_connections().await.expect("outage");

    // The claimed job still runs to its end, logging far more than the buffer holds.
    OUTAGE_GO.notify_one();
    wait_for("the job to finish its work", async || {
        OUTAGE_JOB_DONE.load(std::sync::atomic::Ordering::SeqCst).then_some(())
    })
    .await;
    let dropped = wait_for("records to be dropped", async || {
        let d = forge.telemetry().dropped_logs();
        (d > 0).then_some(d)
    })
    .await;
    assert!(dropped >= 150, "200 lines into a 50-record buffer drop at least 150, dropped {dropped}");
    assert!(forge.telemetry().buffered().0 <= 50, "the buffer stays bounded");
    // (Not through the node's flush: its flusher may hold the batch it is retrying, leaving
    // nothing for a second writer to fail on.)
    let refused = <sqlx::PgConnection as sqlx::Connection>::connect(db.url()).await;
    assert!(refused.is_err(), "the database is really down");

    // Back: the job's completion lands (or it is rescued and completes), and logging resumes.
    db.restore_connections().await.expect("back");
    wait_for("the job to complete", async || (job_state(db.pool(), id).await == "completed").then_some(())).await;
    ChargeCard::dispatch(&forge, Charge { amount: 1 }).await.expect("dispatch after the outage");
    wait_for("logs written after the outage", async || {
        let page = LogQuery::default().text("charging card").fetch(db.pool()).await.expect("logs");
        (!page.entries.is_empty()).then_some(())
    })
    .await;
    let kept: i64 = sqlx::query_scalar("select count(*) from forge_logs where message = 'working through the outage'")
        .fetch_one(db.pool())
        .await
        .expect("count");
    assert!(kept > 0 && kept <= 50, "the newest buffered lines were written once the database was back: {kept}");
    // Rows written before the outage say 0: wait for one written after it.
    wait_for("the drop counter in forge_metrics", async || {
        sqlx::query_scalar::<_, Option<f64>>(
            "select max(value) from forge_metrics where name = 'forge_telemetry_dropped' and labels ->> 'kind' = 'logs'",
        )
        .fetch_one(db.pool())
        .await
        .expect("gauge")
        .filter(|gauge| *gauge >= dropped as f64)
    })
    .await;
    forge.stop().await.expect("stop");
}

#[tokio::test]
async fn retention_deletes_only_rows_older_than_their_kind_keeps() {
    let db = TestDatabase::new().await.expect("db");
    let pool = db.pool();
    for age in ["1 hour", "2 days", "10 days"] {
        sqlx::raw_sql(&format!(
            "insert into forge_logs (at, level, target, message, node_id) select now() - interval '{age}', 'info', 't', 'm', 'n' from generate_series(1, 3);
             insert into forge_traces (trace_id, span_id, name, kind, started_at, duration_us, status, node_id)
               select md5(random()::text)::uuid, 's', 'x', 'internal', now() - interval '{age}', 1, 'ok', 'n' from generate_series(1, 3);
             insert into forge_metrics (at, node_id, name, kind, value, seconds) select now() - interval '{age}', 'n', 'm', 'gauge', 1, 10 from generate_series(1, 3);"
        ))
        .execute(pool)
        .await
        .expect("rows");
    }
    let mut retention = forge::config::RetentionConfig::default();
    retention.logs = "7d".parse().expect("duration");
    retention.traces = "1d".parse().expect("duration");
    retention.metrics = "30d".parse().expect("duration");
    let pruned = enforce_retention(pool, &retention).await.expect("prune");
    assert_eq!((pruned.logs, pruned.spans, pruned.metrics), (3, 6, 0));
    let count = async |sql: &str| -> i64 { sqlx::query_scalar(sql).fetch_one(pool).await.expect("count") };
    assert_eq!(count("select count(*) from forge_logs where at > now() - interval '7 days'").await, 6);
    assert_eq!(count("select count(*) from forge_logs").await, 6);
    assert_eq!(count("select count(*) from forge_traces").await, 3);
    assert_eq!(count("select count(*) from forge_metrics").await, 9);
    assert_eq!(enforce_retention(pool, &retention).await.expect("prune again"), Default::default());
}

#[tokio::test]
async fn the_query_api_is_served_by_indexes_on_a_large_table() {
    let db = TestDatabase::new().await.expect("db");
    let pool = db.pool();
    sqlx::raw_sql(
        "insert into forge_logs (at, level, target, message, node_id, job_id, trace_id)
           select now() - make_interval(secs => i), case when i % 10 = 0 then 'error' else 'info' end, 't',
                  'line ' || i, 'n', i / 10, md5((i / 10)::text)
           from generate_series(1, 100000) i;
         insert into forge_traces (trace_id, span_id, name, kind, started_at, duration_us, status, node_id, job_id)
           select md5((i / 5)::text)::uuid, left(md5(i::text), 16), 'x', 'internal', now() - make_interval(secs => i), 1, 'ok', 'n', i / 5
           from generate_series(1, 100000) i;
         insert into forge_metrics (at, node_id, name, kind, value, seconds)
           select now() - make_interval(secs => i), 'n', 'm' || (i % 50), 'gauge', i, 10
           from generate_series(1, 100000) i;
         insert into forge_jobs (kind, state, attempt, attempted_at, finalized_at)
           select 'k', 'completed', 1, now() - make_interval(secs => i), now() from generate_series(1, 100000) i;
         analyze forge_logs; analyze forge_traces; analyze forge_metrics; analyze forge_jobs;",
    )
    .execute(pool)
    .await
    .expect("rows");
    let plans = [
        "select * from forge_logs where job_id = 42 order by at desc, id desc limit 101",
        "select * from forge_logs where trace_id = md5('42') order by at desc, id desc limit 101",
        "select * from forge_logs where level = any('{error}') order by at desc, id desc limit 101",
        "select * from forge_logs where at >= now() - interval '1 hour' order by at desc, id desc limit 101",
        "select * from forge_traces where trace_id = md5('42')::uuid order by started_at, span_id",
        "select * from forge_traces where started_at > now() - interval '10 minutes' order by started_at desc limit 50",
        "select * from forge_metrics where name = 'm7' and at > now() - interval '1 hour' and at <= now() and labels @> '{}' order by at",
        // A trace's jobs, by the id ranges of its dispatch spans (the attempts' spans).
        "select distinct on (j.id) j.* from unnest('{10,500}'::bigint[], '{12,510}'::bigint[]) as r(lo, hi)
           join forge_jobs j on j.id between r.lo and r.hi order by j.id limit 10000",
    ];
    for sql in plans {
        let rows: Vec<(String,)> = sqlx::query_as(&format!("explain {sql}")).fetch_all(pool).await.expect("explain");
        let plan = rows.into_iter().map(|(line,)| line).collect::<Vec<_>>().join("\n");
        assert!(!plan.contains("Seq Scan"), "{sql}\n{plan}");
    }
    // And the API answers on it.
    let page = LogQuery::default().job(42).fetch(pool).await.expect("logs");
    assert_eq!(page.entries.len(), 10);
    let t = trace(pool, page.entries[0].trace_id.expect("trace")).await.expect("trace").expect("stored");
    assert_eq!(t.span_count, 5);
    // A job's own trace: its attempt, rebuilt from its row.
    let t = trace(pool, forge::observability::TraceId::of_job(JobId(500))).await.expect("trace").expect("the job's");
    assert_eq!((t.span_count, t.roots[0].job_id), (1, Some(500)));
}

/// The query [`an_rpc_call_is_one_span_that_names_its_function`] calls.
#[forge::query(public)]
async fn span_echo(_ctx: &QueryContext, n: i32) -> Result<i32, ForgeError> {
    tracing::info!("inside span_echo");
    Ok(n)
}

/// A span's name and the function it names, if any.
type NamedSpan = (String, Option<String>);

/// A layer noting, for the gateway's spans, their names and the function each one names.
#[derive(Clone, Default)]
struct SpanNames(std::sync::Arc<std::sync::Mutex<Vec<NamedSpan>>>);

struct FunctionField<'a>(&'a mut Option<String>);

impl tracing::field::Visit for FunctionField<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "function" {
            *self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "function" {
            *self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for SpanNames
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let name = attrs.metadata().name();
        if name.starts_with("forge.") {
            let mut function = None;
            attrs.record(&mut FunctionField(&mut function));
            self.0.lock().expect("names").push((name.to_owned(), function));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let mut names = self.0.lock().expect("names");
        if let Some((_, function)) = names.iter_mut().rev().find(|(name, _)| name == span.name()) {
            values.record(&mut FunctionField(function));
        }
    }
}

/// Over `/rpc` the request's `forge.http` span is the call's only span and names the function
/// (a `forge.function` span inside it would be created and entered at every poll for nothing);
/// a call made outside any request still runs in a `forge.function` span of its own. Seen by a
/// plain layer, without Forge's storage filter.
#[tokio::test]
async fn an_rpc_call_is_one_span_that_names_its_function() {
    use tower::ServiceExt;
    use tracing_subscriber::layer::SubscriberExt;

    let db = TestDatabase::new().await.expect("test database");
    let router = db.router().expect("router");
    let names = SpanNames::default();
    let _scope = tracing::subscriber::set_default(tracing_subscriber::registry().with(names.clone()));

    let request = axum::http::Request::post("/rpc/span_echo")
        .header("content-type", "application/json")
        .body(axum::body::Body::from("7"))
        .expect("request");
    let response = router.oneshot(request).await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(
        names.0.lock().expect("names").drain(..).collect::<Vec<_>>(),
        [("forge.http".to_owned(), Some("span_echo".to_owned()))]
    );

    let answer: i32 = db.call("span_echo", 8, &forge::testing::TestCaller::anonymous()).await.expect("call");
    assert_eq!(answer, 8);
    assert_eq!(
        names.0.lock().expect("names").drain(..).collect::<Vec<_>>(),
        [("forge.function".to_owned(), Some("span_echo".to_owned()))]
    );
}
