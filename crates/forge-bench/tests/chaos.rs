//! `forge-bench chaos` with the database faults, small enough for `cargo test`: the PostgreSQL
//! server (a private embedded cluster, never the shared one) restarted while three workers
//! drain, and stopped for longer than the lease. Every figure of the report must be 0 and every
//! job completed. The full-size runs are in README's table.

use std::process::{Command, Stdio};

fn chaos(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_forge-bench"))
        .args(["chaos", "--jobs", "2000", "--nodes", "3"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run forge-bench chaos");
    assert!(out.status.success(), "forge-bench chaos {args:?} failed");
    let line = String::from_utf8(out.stdout).expect("utf-8");
    serde_json::from_str(line.trim()).expect("one JSON line")
}

fn assert_clean(report: &serde_json::Value) {
    for figure in ["lost", "finalized_twice", "overlapping_attempts", "succeeded_but_discarded", "stuck"] {
        assert_eq!(report[figure], 0, "{figure}: {report}");
    }
    assert_eq!(report["completed"], 2000, "{report}");
}

#[test]
fn restarting_the_database_loses_nothing_and_runs_nothing_twice_at_once() {
    let report = chaos(&["--restart-db-every-ms", "1000", "--work-ms", "5"]);
    assert!(report["db_restarts"].as_u64().expect("restarts") >= 1, "{report}");
    assert_clean(&report);
}

#[test]
fn an_outage_longer_than_the_lease_loses_nothing_and_runs_nothing_twice_at_once() {
    let report = chaos(&["--db-outage-ms", "3000", "--lease", "1s", "--outage-after-ms", "500", "--work-ms", "20"]);
    assert_eq!(report["db_outages"], 1, "{report}");
    assert_clean(&report);
}
