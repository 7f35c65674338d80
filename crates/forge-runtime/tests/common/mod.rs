//! Helpers shared by the runtime's integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::Path;
use std::time::Duration;

use forge_runtime::ForgeConfig;
use forge_runtime::config::{Role, Roles};

/// Writes `files` (name, contents) into a new folder and returns it.
pub fn migrations_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write migration");
    }
    dir
}

/// `config` with only the given roles.
pub fn with_roles(mut config: ForgeConfig, roles: &[Role]) -> ForgeConfig {
    config.node.roles = Roles::new(roles.iter().copied()).expect("at least one role");
    config
}

/// A listener on a free loopback port.
pub fn listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port")
}

/// GET `url`, returning status, content type and body.
pub async fn get(url: &str) -> (u16, String, String) {
    let response = reqwest::Client::new().get(url).timeout(Duration::from_secs(10)).send().await.expect("request");
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, content_type, response.text().await.expect("body"))
}

/// The number of rows in `forge_migrations` per (source, version), as `(label, count)`.
pub async fn ledger(pool: &sqlx::PgPool) -> Vec<(String, i64)> {
    sqlx::query_as(
        "select source || '/' || version, count(*) from forge_migrations group by source, version order by 1",
    )
    .fetch_all(pool)
    .await
    .expect("read ledger")
}

/// Whether `table` exists in the database behind `pool`.
pub async fn table_exists(pool: &sqlx::PgPool, table: &str) -> bool {
    sqlx::query_scalar("select to_regclass($1) is not null").bind(table).fetch_one(pool).await.expect("to_regclass")
}

/// Path to a string, for messages.
pub fn show(path: &Path) -> String {
    path.display().to_string()
}
