//! `forge-bench realtime` prints its JSON line and every client sees the final value, with both
//! writers (two-second smoke runs; the figures come from release builds, see
//! website/src/performance.md).

use std::process::Command;

#[test]
fn every_client_sees_the_last_write() {
    for writer in ["rpc", "sql"] {
        let output = Command::new(env!("CARGO_BIN_EXE_forge-bench"))
            .args([
                "realtime",
                "--clients",
                "20",
                "--groups",
                "3",
                "--rate",
                "10",
                "--seconds",
                "2",
                "--writer",
                writer,
            ])
            .output()
            .expect("run forge-bench");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report: serde_json::Value = serde_json::from_str(stdout.lines().last().expect("a line")).expect("JSON");
        assert_eq!(report["bench"], "realtime");
        assert_eq!(report["writer"], writer);
        assert_eq!(report["writes"], 20, "{report}");
        assert_eq!(report["missed"], 0, "{report}");
        assert!(report["pushes"].as_u64().is_some_and(|n| n >= 20), "every client got a push: {report}");
        for key in ["push_p50_ms", "push_p99_ms", "node_rss_mb"] {
            assert!(report[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {report}");
        }
    }
}
