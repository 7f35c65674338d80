//! Leader failover with real processes: three nodes, the leader killed with SIGKILL, another
//! node leads within 10 seconds.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::SCHEMA;
use forge::testing::TestDatabase;

fn node(url: &str) -> Child {
    common::worker(url, &["--lease", "2s", "--heartbeat", "200ms", "--crons"])
}

/// The leader's node id and pid, once there is a leader that is a running node.
async fn leader(pool: &sqlx::PgPool) -> Option<(String, i32)> {
    sqlx::query_as(
        "select n.id, n.pid from forge_leaders l join forge_nodes n on n.id = l.node_id
         where l.role = 'scheduler' and n.status = 'running'",
    )
    .fetch_optional(pool)
    .await
    .expect("leader")
}

#[tokio::test]
async fn killing_the_leader_of_three_nodes_hands_leadership_over_within_10s() {
    let db = TestDatabase::new().await.expect("db");
    let mut nodes: Vec<Child> = (0..3).map(|_| node(db.url())).collect();

    let deadline = Instant::now() + Duration::from_secs(30);
    let (first, pid) = loop {
        if let Some(l) = leader(db.pool()).await {
            break l;
        }
        assert!(Instant::now() < deadline, "no leader within 30 s of starting three nodes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let index = nodes.iter().position(|c| i32::try_from(c.id()).ok() == Some(pid)).expect("the leader is one of ours");
    let mut victim = nodes.remove(index);
    victim.kill().expect("SIGKILL the leader");
    victim.wait().expect("reap");
    let killed_at = Instant::now();

    let takeover = loop {
        if let Some((id, _)) = leader(db.pool()).await
            && id != first
        {
            break killed_at.elapsed();
        }
        assert!(killed_at.elapsed() < Duration::from_secs(10), "no new leader within 10 s of killing {first}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("leader takeover took {takeover:?}");
    let leaders: i64 =
        sqlx::query_scalar("select count(*) from forge_leaders").fetch_one(db.pool()).await.expect("count");
    assert_eq!(leaders, 1);

    for mut n in nodes {
        n.kill().expect("stop node");
        n.wait().expect("reap");
    }
}

#[tokio::test]
async fn two_nodes_racing_for_leadership_never_both_fire_crons() {
    let db = TestDatabase::new().await.expect("db");
    sqlx::raw_sql(SCHEMA).execute(db.pool()).await.expect("schema");
    let mut nodes: Vec<Child> = (0..2).map(|_| node(db.url())).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ticks: i64 =
            sqlx::query_scalar("select count(*) from bench_cron_ticks").fetch_one(db.pool()).await.expect("n");
        if ticks >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "the cron did not run 5 times within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let firers: Vec<String> = sqlx::query_scalar("select distinct fired_by from forge_cron_runs")
        .fetch_all(db.pool())
        .await
        .expect("fired_by");
    assert_eq!(firers.len(), 1, "one leader fired every tick: {firers:?}");
    let doubled: i64 = sqlx::query_scalar(
        "select count(*) from (select scheduled_at from bench_cron_ticks group by scheduled_at having count(*) > 1) t",
    )
    .fetch_one(db.pool())
    .await
    .expect("doubled");
    assert_eq!(doubled, 0);
    for n in &mut nodes {
        n.kill().expect("stop node");
        n.wait().expect("reap");
    }
}

#[test]
fn a_cron_every_second_fires_each_tick_once_across_a_leader_kill() {
    // 15 s before and 15 s after killing the leader of three nodes.
    let out = Command::new(env!("CARGO_BIN_EXE_forge-bench"))
        .args(["failover", "--nodes", "3", "--seconds", "15"])
        .stderr(Stdio::inherit())
        .output()
        .expect("run forge-bench failover");
    assert!(out.status.success(), "forge-bench failover failed");
    let line = String::from_utf8(out.stdout).expect("utf-8");
    let report: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON line");
    assert_eq!(report["bench"], "failover");
    let expected = report["cron_ticks_expected"].as_i64().expect("expected");
    assert!(expected >= 28, "{report}");
    assert_eq!(report["cron_ticks_fired"].as_i64(), Some(expected), "no gap: {report}");
    assert_eq!(report["cron_ticks_duplicated"].as_i64(), Some(0), "no duplicate: {report}");
    assert_eq!(report["cron_ticks_skipped"].as_i64(), Some(0), "none skipped: {report}");
    assert!(report["leader_takeover_ms"].as_f64().expect("takeover") < 10_000.0, "{report}");
}

/// Sends `signal` (`STOP`, `CONT`) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().expect("kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

#[tokio::test]
async fn a_frozen_leader_loses_leadership_within_its_term_and_steps_down_when_it_wakes() {
    let db = TestDatabase::new().await.expect("db");
    // Term (dead_after) 2 s: the lock's session ends after 2 s of silence.
    let spawn = || common::worker(db.url(), &["--lease", "2s", "--heartbeat", "200ms", "--dead-after", "2s"]);
    let _nodes = Reaped(vec![spawn(), spawn()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (first, pid) = loop {
        if let Some(l) = leader(db.pool()).await {
            break l;
        }
        assert!(Instant::now() < deadline, "no leader within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let pid = u32::try_from(pid).expect("pid");
    signal(pid, "STOP");
    let frozen_at = Instant::now();
    // The other node leads: the frozen one's session (and its lock) was ended by the server.
    let takeover = loop {
        let holder: Option<String> =
            sqlx::query_scalar("select node_id from forge_leaders where role = 'scheduler' and node_id <> $1")
                .bind(&first)
                .fetch_optional(db.pool())
                .await
                .expect("leader");
        if holder.is_some() {
            break frozen_at.elapsed();
        }
        if frozen_at.elapsed() > Duration::from_secs(15) {
            signal(pid, "CONT");
            panic!("no new leader within 15 s of freezing {first}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("a frozen leader was replaced after {takeover:?}");
    assert!(takeover >= Duration::from_millis(1500), "replaced before its term could end: {takeover:?}");

    // Woken up, the old leader finds its session gone and steps down: one leader, not two.
    signal(pid, "CONT");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leaders: Vec<String> =
        sqlx::query_scalar("select node_id from forge_leaders").fetch_all(db.pool()).await.expect("leaders");
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    assert_ne!(leaders[0], first, "the woken node did not take leadership back");
    let holders: i64 = sqlx::query_scalar(
        "select count(*) from pg_locks l join pg_database d on d.oid = l.database
         where l.locktype = 'advisory' and l.granted and d.datname = current_database()",
    )
    .fetch_one(db.pool())
    .await
    .expect("locks");
    assert!(holders <= 1, "one session holds the leader lock");
}

/// Child processes killed (and woken first, if stopped) when dropped, also when a test fails.
struct Reaped(Vec<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
