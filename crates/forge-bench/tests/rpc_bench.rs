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

#[test]
fn rpc_pairs_alternate_with_the_floor_and_report_the_median_ratio() {
    let output = Command::new(env!("CARGO_BIN_EXE_forge-bench"))
        .args(["rpc", "--pairs", "2", "--seconds", "1", "--connections", "4"])
        .output()
        .expect("run forge-bench");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 5, "four runs and the summary: {lines:?}");
    let benches: Vec<&str> = lines[..4].iter().map(|l| l["bench"].as_str().expect("bench")).collect();
    assert_eq!(benches, ["rpc-floor", "rpc", "rpc", "rpc-floor"], "the order flips every pair");
    let summary = &lines[4];
    assert_eq!(summary["bench"], "rpc-vs-floor");
    let ratios: Vec<f64> = summary["ratios"].as_array().expect("ratios").iter().filter_map(|r| r.as_f64()).collect();
    assert_eq!(ratios.len(), 2, "{summary}");
    let first = lines[1]["req_per_s"].as_f64().expect("rpc") / lines[0]["req_per_s"].as_f64().expect("floor");
    assert!((ratios[0] - first).abs() < 0.001, "{summary}");
    for key in ["ratio_median", "rpc_median", "floor_median", "p99_ms_median", "machine_us_per_req_median"] {
        assert!(summary[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {summary}");
    }
}
