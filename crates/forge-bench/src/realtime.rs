//! `forge-bench realtime`: `--clients` WebSocket clients, each subscribed to a live query (in
//! `--groups` groups of distinct arguments), while a writer changes the table the query reads
//! `--rate` times a second for `--seconds`. The node runs in its own process
//! (`forge-bench realtime-node`, gateway and function roles), so `node_rss_mb` is the node's
//! alone.
//!
//! Each write commits value `n` and notes when; a client's push latency is from that commit to
//! the arrival of a result holding `n` (pushes are coalesced: a client sees the latest value, not
//! every one). `missed` counts clients that never saw the final value (must be 0).

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use forge::config::{Role, Roles};
use forge::prelude::*;
use forge::testing::TestDatabase;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;

use crate::stats::{Report, ms, quantile};

/// What `forge-bench realtime` takes.
#[derive(Debug, clap::Args)]
pub(crate) struct RealtimeArgs {
    /// WebSocket clients, each with one subscription.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Distinct arguments among the subscriptions (each a group that runs once per change).
    #[arg(long, default_value_t = 10)]
    groups: usize,
    /// Writes a second to the table the query reads.
    #[arg(long, default_value_t = 20)]
    rate: u64,
    /// How long the writer writes.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// How the writer writes: through a mutation on the node (`rpc`: the node reads the change
    /// feed at once) or with plain SQL from outside Forge (`sql`: the node finds it at its next
    /// `[realtime] poll`).
    #[arg(long, value_enum, default_value_t = Writer::Rpc)]
    writer: Writer,
}

/// How `realtime`'s writer writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Writer {
    /// A mutation over `/rpc`.
    Rpc,
    /// An INSERT from another connection.
    Sql,
}

/// How `forge-bench realtime-node` runs its node.
#[derive(Debug, clap::Args)]
pub(crate) struct NodeArgs {
    /// The database.
    #[arg(long)]
    database_url: String,
}

/// The table the live query reads.
const SCHEMA: &str = "create table if not exists bench_rt_values (id bigint generated always as identity primary key, n bigint not null)";

#[derive(Debug, Deserialize)]
struct Group {
    group: i64,
}

/// The latest value written (the argument only makes groups).
#[forge::query(public, reads = ["bench_rt_values"])]
async fn bench_rt_latest(ctx: &QueryContext, args: Group) -> Result<i64, ForgeError> {
    Ok(sqlx::query_scalar("select coalesce(max(n), 0) + 0 * $1 from bench_rt_values")
        .bind(args.group)
        .fetch_one(ctx.db())
        .await?)
}

/// Writes value `n`.
#[forge::mutation(public)]
async fn bench_rt_write(ctx: &MutationContext, n: i64) -> Result<(), ForgeError> {
    sqlx::query("insert into bench_rt_values (n) values ($1)").bind(n).execute(&mut ctx.tx().await?).await?;
    Ok(())
}

/// Runs a gateway node on a free port, prints `listening <addr>`, and stops on SIGTERM.
pub(crate) async fn node(args: NodeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = ForgeConfig::default();
    config.database.url = Some(args.database_url);
    config.node.roles = Roles::new([Role::Gateway, Role::Function]).ok_or("no roles")?;
    config.realtime.max_connections = 100_000.try_into()?;
    config.gateway.max_connections = 100_000.try_into()?;
    config.observability.log_level = "warn".to_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    // An empty project folder: the bench has no migrations of its own.
    let dir = std::env::temp_dir().join(format!("forge-bench-realtime-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let node = Forge::builder().config(config).project_dir(&dir).listener(listener).build()?.start().await?;
    println!("listening {}", node.local_addr().ok_or("no gateway")?);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    term.recv().await;
    let stopped = node.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(stopped?)
}

/// Kills the node when dropped.
struct NodeProcess(Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // SIGTERM first, so the node removes its folder and deregisters.
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) async fn run(args: RealtimeArgs) -> Report {
    let db = TestDatabase::new().await?;
    sqlx::query(SCHEMA).execute(db.pool()).await?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["realtime-node", "--database-url", db.url()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let node = NodeProcess(child);
    let mut lines = tokio::io::BufReader::new(tokio::process::ChildStdout::from_std(stdout)?).lines();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await??.ok_or("the node ended")?;
        if let Some(addr) = line.strip_prefix("listening ") {
            break addr.to_owned();
        }
    };

    // Connect and subscribe every client; each waits for its first result.
    let commits: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(vec![Instant::now()]));
    let final_value = Arc::new(std::sync::atomic::AtomicI64::new(-1));
    let mut clients = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(args.clients.max(1));
    let connect_started = Instant::now();
    for i in 0..args.clients {
        let (addr, commits, final_value, ready) =
            (addr.clone(), commits.clone(), final_value.clone(), ready_tx.clone());
        let group = (i % args.groups.max(1)) as i64;
        clients.push(tokio::spawn(async move {
            let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await?;
            let subscribe =
                json!({"type": "subscribe", "id": "v", "query": "bench_rt_latest", "args": {"group": group}});
            socket.send(Message::Text(subscribe.to_string().into())).await?;
            let mut latencies = Vec::new();
            let mut pushes = 0usize;
            let mut first = true;
            let mut last = 0i64;
            let mut give_up: Option<Instant> = None;
            loop {
                let target = final_value.load(std::sync::atomic::Ordering::Acquire);
                if target >= 0 {
                    if last >= target {
                        return Ok::<_, Box<dyn std::error::Error + Send + Sync>>((latencies, pushes, true));
                    }
                    let at = *give_up.get_or_insert_with(|| Instant::now() + Duration::from_secs(30));
                    if Instant::now() > at {
                        return Ok((latencies, pushes, false));
                    }
                }
                let frame = match tokio::time::timeout(Duration::from_millis(200), socket.next()).await {
                    Err(_) => continue,
                    Ok(Some(Ok(frame))) => frame,
                    Ok(_) => return Ok((latencies, pushes, false)),
                };
                let Message::Text(text) = frame else { continue };
                let arrived = Instant::now();
                let message: Value = serde_json::from_str(text.as_str())?;
                let Some(n) = message["data"].as_i64() else { continue };
                if first {
                    first = false;
                    let _ = ready.send(()).await;
                } else {
                    // Every write this push is the first to show: from its commit to now.
                    let commits = commits.lock().expect("commits");
                    for m in (last + 1)..=n {
                        if let Some(at) = commits.get(m as usize) {
                            latencies.push(arrived.saturating_duration_since(*at));
                        }
                    }
                    pushes += 1;
                }
                last = n;
            }
        }));
    }
    drop(ready_tx);
    for _ in 0..args.clients {
        tokio::time::timeout(Duration::from_secs(120), ready_rx.recv()).await?.ok_or("a client failed to subscribe")?;
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();

    // The writer: value n at n / rate seconds.
    let writes = args.rate * args.seconds;
    let http = reqwest::Client::new();
    let started = Instant::now();
    for n in 1..=writes {
        let due = started + Duration::from_secs_f64(n as f64 / args.rate.max(1) as f64);
        tokio::time::sleep_until(due.into()).await;
        // The commit happens before the answer: noted as the answer arrives (an upper bound
        // on the commit time, so latencies are if anything understated by one round trip).
        match args.writer {
            Writer::Rpc => {
                http.post(format!("http://{addr}/rpc/bench_rt_write")).json(&n).send().await?.error_for_status()?;
            }
            Writer::Sql => {
                sqlx::query("insert into bench_rt_values (n) values ($1)").bind(n as i64).execute(db.pool()).await?;
            }
        }
        commits.lock().expect("commits").push(Instant::now());
    }
    let elapsed = started.elapsed();
    let node_rss_mb = rss_mb(node.0.id());
    final_value.store(writes as i64, std::sync::atomic::Ordering::Release);

    let mut latencies = Vec::new();
    let (mut missed, mut pushes) = (0usize, 0usize);
    for client in clients {
        match client.await? {
            Ok((l, p, reached)) => {
                pushes += p;
                latencies.extend(l);
                if !reached {
                    missed += 1;
                }
            }
            Err(_) => missed += 1,
        }
    }
    latencies.sort();
    drop(node);
    Ok(json!({
        "bench": "realtime",
        "clients": args.clients,
        "groups": args.groups,
        "writer": args.writer,
        "writes": writes,
        "updates_per_s": (writes as f64 / elapsed.as_secs_f64()).round(),
        "pushes": pushes,
        "push_p50_ms": ms(quantile(&latencies, 0.5)),
        "push_p99_ms": ms(quantile(&latencies, 0.99)),
        "missed": missed,
        "node_rss_mb": node_rss_mb,
        "connect_s": (connect_secs * 100.0).round() / 100.0,
    }))
}

/// A process's resident set, in MB (from `/proc`).
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| (kb / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0)
}
