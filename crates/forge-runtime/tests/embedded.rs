//! The embedded cluster, from `initdb` to stop, with real server binaries. Runs as root here:
//! the server must run as the `postgres` user.

use std::os::unix::fs::PermissionsExt;

use forge_runtime::db::EmbeddedPostgres;
use sqlx::Connection;

#[test]
fn a_cluster_is_created_shared_and_stopped_by_its_last_user() {
    let root = tempfile::Builder::new().prefix("forge-embedded-").tempdir().expect("temp dir");
    // tempdir makes the folder 0700; the postgres user must be able to walk into it.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let dir = root.path().join(".forge/postgres");

    let first = EmbeddedPostgres::start(&dir).expect("first start runs initdb and starts the server");
    assert_eq!(first.dir(), dir, "the cluster lives where it was asked to");
    assert!(dir.join("data/PG_VERSION").exists());
    let pid_file = dir.join("data/postmaster.pid");
    assert!(pid_file.exists(), "server running");

    let second = EmbeddedPostgres::start(&dir).expect("a second user joins the running server");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect_with(&second.connect_options("postgres")).await.expect("connect");
        let one: i32 = sqlx::query_scalar("select 1").fetch_one(&mut conn).await.expect("query");
        assert_eq!(one, 1);
        let listen: String = sqlx::query_scalar("show listen_addresses").fetch_one(&mut conn).await.expect("show");
        assert_eq!(listen, "", "no TCP port: the socket is the only way in");
        conn.close().await.expect("close");
        // The URL form works too.
        let conn = sqlx::PgConnection::connect(&second.url("postgres")).await.expect("connect by url");
        conn.close().await.expect("close");
    });

    first.stop().expect("first user leaves");
    assert!(pid_file.exists(), "the server keeps running while another user holds it");
    second.stop().expect("last user leaves");
    assert!(!pid_file.exists(), "the last user stops the server");

    // Reused across runs: a new start finds the data folder and does not run initdb again.
    let marker = dir.join("data/forge-test-marker");
    std::fs::write(&marker, "kept").expect("marker");
    let again = EmbeddedPostgres::start(&dir).expect("restart");
    assert!(marker.exists(), "the cluster was reused, not recreated");
    again.stop().expect("stop");
}
