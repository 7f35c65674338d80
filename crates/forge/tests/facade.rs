//! The facade as README.md shows it: a node on a fresh test database becomes ready and stops.

use forge::prelude::*;

#[tokio::test]
async fn readme_example_node_becomes_ready() {
    let db = forge::testing::TestDatabase::new().await.expect("fresh, migrated database");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    let node = Forge::builder().config(db.config()).listener(port).build().expect("build");
    let running = node.start().await.expect("start");
    let addr = running.local_addr().expect("gateway role is on by default");

    let body = reqwest::get(format!("http://{addr}/ready")).await.expect("GET /ready");
    assert_eq!(body.status().as_u16(), 200);
    running.stop().await.expect("stop");
}

#[test]
fn an_empty_config_takes_every_role() {
    let config = ForgeConfig::parse_toml("").expect("empty config");
    for role in Role::ALL {
        assert!(config.node.roles.contains(role), "{role}");
    }
}

#[test]
fn a_dead_after_shorter_than_two_heartbeats_is_refused() {
    let mut config = ForgeConfig::default();
    config.node.heartbeat_interval = "5s".parse().expect("duration");
    config.node.dead_after = "6s".parse().expect("duration");
    let err = Forge::builder().config(config).build().expect_err("refused");
    assert!(err.to_string().contains("node.dead_after"), "{err}");
}
