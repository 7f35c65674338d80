//! `forge keys …` as a user runs it: a real process against a fresh database.

use std::process::Output;

use forge::gateway::ApiKeys;
use forge::testing::{TestDatabase, project_root};
use serde_json::Value;

async fn forge(db: &TestDatabase, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_forge"));
    command.arg("--project").arg(project_root()).args(args).env("DATABASE_URL", db.url());
    command.output().await.expect("run forge")
}

fn json(output: &Output) -> Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[tokio::test]
async fn keys_are_created_listed_rotated_and_revoked() {
    let db = TestDatabase::new().await.expect("db");
    let created =
        json(&forge(&db, &["--json", "keys", "create", "ci", "--role", "admin", "--expires-in", "30d"]).await);
    let key = created["key"].as_str().expect("key");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["roles"], serde_json::json!(["admin"]));
    let keys = ApiKeys::new(db.pool().clone());
    assert!(keys.verify(key).await.expect("verify").is_some_and(|auth| auth.has_role("admin")));

    let listed = json(&forge(&db, &["--json", "keys", "list"]).await);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert!(!listed.to_string().contains(&key[19..]), "a listing never shows a secret");

    let rotated = json(&forge(&db, &["--json", "keys", "rotate", &id]).await);
    let new_key = rotated["key"].as_str().expect("key");
    assert!(keys.verify(key).await.expect("verify").is_none(), "the old key is revoked at once");
    assert!(keys.verify(new_key).await.expect("verify").is_some());

    let new_id = rotated["id"].as_str().expect("id");
    let revoked = json(&forge(&db, &["--json", "keys", "revoke", new_id]).await);
    assert!(revoked[0]["revoked_at"].is_string(), "{revoked}");
    assert!(keys.verify(new_key).await.expect("verify").is_none());
    // A revoked key cannot be brought back by rotating it.
    let again = forge(&db, &["keys", "rotate", new_id]).await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is revoked"), "{again:?}");
    assert_eq!(json(&forge(&db, &["--json", "keys", "list"]).await).as_array().map(Vec::len), Some(2));

    let table = forge(&db, &["keys", "list"]).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("ID") && text.matches("revoked").count() == 2, "{text}");
}

#[tokio::test]
async fn key_errors_are_one_clear_line() {
    let db = TestDatabase::new().await.expect("db");
    let missing = forge(&db, &["keys", "revoke", "5f0c6f0e-0000-4000-8000-000000000000"]).await;
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(stderr.trim(), "error: no API key with id 5f0c6f0e-0000-4000-8000-000000000000");

    let bad = forge(&db, &["keys", "revoke", "not-a-uuid"]).await;
    assert!(!bad.status.success());
    let unnamed = forge(&db, &["keys", "create", " "]).await;
    assert!(String::from_utf8_lossy(&unnamed.stderr).contains("name"), "{unnamed:?}");

    let empty = TestDatabase::empty().await.expect("db");
    let unmigrated = forge(&empty, &["keys", "list"]).await;
    assert!(!unmigrated.status.success());
    assert!(String::from_utf8_lossy(&unmigrated.stderr).contains("forge migrate up"), "{unmigrated:?}");
}
