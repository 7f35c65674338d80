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

/// What user code looks like: the errors a handler meets most convert with `?`, and a context's
/// transaction is an executor as it is.
#[forge::mutation(public)]
async fn clean_note(ctx: &MutationContext, body: String) -> Result<i64, ForgeError> {
    let tags: serde_json::Value = serde_json::from_str(r#"["a"]"#)?;
    let id: i64 = sqlx::query_scalar("insert into clean_notes (body, tags) values ($1, $2) returning id")
        .bind(&body)
        .bind(&tags)
        .fetch_one(&mut ctx.tx().await?)
        .await?;
    ctx.dispatch::<CleanIndex>(id).await?;
    Ok(id)
}

#[forge::job(transactional)]
async fn clean_index(ctx: &JobContext, id: i64) -> Result<String, JobError> {
    let body: String =
        sqlx::query_scalar("select body from clean_notes where id = $1").bind(id).fetch_one(ctx.db()).await?;
    let parsed: serde_json::Value = serde_json::from_str(&body)?;
    sqlx::query("update clean_notes set indexed = true where id = $1").bind(id).execute(&mut ctx.tx().await?).await?;
    Ok(parsed.to_string())
}

#[tokio::test]
async fn user_code_needs_no_error_boilerplate() {
    let db = forge::testing::TestDatabase::new().await.expect("db");
    sqlx::query(
        "create table clean_notes (id bigserial primary key, body text, tags jsonb, indexed bool default false)",
    )
    .execute(db.pool())
    .await
    .expect("table");
    let caller = forge::testing::TestCaller::anonymous();
    let id: i64 = db.call("clean_note", &r#"{"x": 1}"#, &caller).await.expect("the mutation commits");
    assert_eq!(db.perform_job::<CleanIndex>(id).await.expect("indexed"), r#"{"x":1}"#);
    let indexed: bool = sqlx::query_scalar("select indexed from clean_notes where id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .expect("row");
    assert!(indexed, "the job's write through its transaction committed with its completion");
    // A handler's serde_json error is a retryable failure, recorded on the row.
    let bad: i64 = db.call("clean_note", &"not json", &caller).await.expect("the mutation commits");
    let err = db.perform_job::<CleanIndex>(bad).await.expect_err("not JSON");
    assert!(matches!(err, JobError::Retry(_)), "{err}");
}
