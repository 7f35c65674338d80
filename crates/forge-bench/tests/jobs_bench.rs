//! `forge-bench jobs --observability on|off` both print their JSON line, and only `on` stores
//! spans (a small smoke run; the figures come from release builds, see
//! website/src/performance.md).

use std::process::Command;

fn run(observability: &str) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_forge-bench"))
        .args(["jobs", "--jobs", "300", "--observability", observability])
        .output()
        .expect("run forge-bench");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("one JSON line")
}

#[test]
fn jobs_reports_with_and_without_observability() {
    let on = run("on");
    assert_eq!((on["bench"].as_str(), on["observability"].as_str()), (Some("jobs"), Some("on")));
    assert!(on["spans_stored"].as_i64().is_some_and(|n| n >= 300), "one span per attempt: {on}");
    let off = run("off");
    assert_eq!(off["observability"], "off");
    assert_eq!(off["spans_stored"], 0, "{off}");
    for report in [&on, &off] {
        for key in ["enqueue_per_s", "drain_per_s", "pickup_p50_ms"] {
            assert!(report[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {report}");
        }
    }
}
