//! Leader failover with real processes: three nodes, the leader killed with SIGKILL, another
//! node leads within 10 seconds.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use forge::testing::TestDatabase;

fn node(url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_forge-bench"))
        .args(["worker", "--database-url", url, "--lease", "2s", "--heartbeat", "200ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn node")
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
