//! `forge-bench rpc` and `rpc-floor` print their JSON line (a one-second smoke run; the figures
//! themselves come from release builds, see website/src/performance.md).

use std::process::Command;

fn run(scenario: &str) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_forge-bench"))
        .args([scenario, "--seconds", "1", "--connections", "4"])
        .output()
        .expect("run forge-bench");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("one JSON line")
}

#[test]
fn rpc_and_its_floor_report_throughput_and_latency() {
    for scenario in ["rpc", "rpc-floor"] {
        let report = run(scenario);
        assert_eq!(report["bench"], scenario);
        assert!(report["requests"].as_u64().is_some_and(|n| n > 0), "{report}");
        assert_eq!(report["errors"], 0, "{report}");
        for key in ["req_per_s", "p50_ms", "p99_ms"] {
            assert!(report[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {report}");
        }
    }
}
