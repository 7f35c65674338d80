//! `forge-bench jobs --observability on|off` both print their JSON line, and only `on` stores
//! telemetry; `forge-bench observability` runs them in pairs and prints the median loss (small
//! smoke runs; the figures come from release builds, see website/src/performance.md).

use std::process::Command;

fn bench(args: &[&str]) -> Vec<serde_json::Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_forge-bench")).args(args).output().expect("run forge-bench");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

fn run(observability: &str) -> serde_json::Value {
    let mut lines = bench(&["jobs", "--jobs", "300", "--observability", observability]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines.remove(0)
}

#[test]
fn jobs_reports_with_and_without_observability() {
    let on = run("on");
    assert_eq!((on["bench"].as_str(), on["observability"].as_str()), (Some("jobs"), Some("on")));
    // Batches, singles through the pool, singles through a dispatcher, concurrent callers: the
    // drain's rate is per job asked for, so exactly that many are enqueued.
    assert_eq!(on["enqueued"].as_i64(), Some(300), "{on}");
    let stored = |r: &serde_json::Value| ["logs", "spans", "metrics"].map(|k| r["stored"][k].as_i64().expect(k));
    assert!(stored(&on).iter().sum::<i64>() > 0, "on stores telemetry: {on}");
    assert_eq!(stored(&on)[1], 0, "no span row per attempt (the job's row is its span): {on}");
    let off = run("off");
    assert_eq!(off["observability"], "off");
    assert_eq!(stored(&off), [0, 0, 0], "{off}");
    for report in [&on, &off] {
        for key in [
            "enqueue_per_s",
            "enqueue_single_per_s",
            "enqueue_single_batched_per_s",
            "drain_per_s",
            "pickup_p50_ms",
            "rss_peak_mb",
            "rss_final_mb",
        ] {
            assert!(report[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {report}");
        }
        // Measured over the last 100,000 jobs: only in runs of 200,000 or more.
        assert!(report["drain_last_100k_per_s"].is_null(), "{report}");
    }
}

#[test]
fn observability_runs_pairs_and_reports_the_median_loss() {
    let lines = bench(&["observability", "--pairs", "1", "--jobs", "200"]);
    assert_eq!(lines.len(), 3, "two runs and the summary: {lines:?}");
    assert_eq!((lines[0]["observability"].as_str(), lines[1]["observability"].as_str()), (Some("on"), Some("off")));
    let summary = &lines[2];
    assert_eq!(summary["bench"], "observability");
    let ratio = summary["ratio_median"].as_f64().expect("ratio");
    let expected = lines[0]["drain_per_s"].as_f64().expect("on") / lines[1]["drain_per_s"].as_f64().expect("off");
    assert!((ratio - expected).abs() < 0.001, "{summary}");
    assert!(summary["target_met"].is_boolean(), "{summary}");
}

#[test]
fn jobs_pairs_alternate_with_the_floor_and_report_the_median_ratio() {
    let lines = bench(&["jobs", "--pairs", "2", "--jobs", "200"]);
    assert_eq!(lines.len(), 5, "four runs and the summary: {lines:?}");
    let benches: Vec<&str> = lines[..4].iter().map(|l| l["bench"].as_str().expect("bench")).collect();
    assert_eq!(benches, ["floor", "jobs", "jobs", "floor"], "the order flips every pair");
    let summary = &lines[4];
    assert_eq!(summary["bench"], "jobs-vs-floor");
    let ratios: Vec<f64> = summary["ratios"].as_array().expect("ratios").iter().filter_map(|r| r.as_f64()).collect();
    let floor_cpu = lines[0]["drain_cpu"]["machine_us_per_job"].as_f64();
    assert!(floor_cpu.is_some_and(|v| v >= 0.0), "the floor reports its CPU per job: {}", lines[0]);
    let first = lines[1]["drain_per_s"].as_f64().expect("jobs") / lines[0]["drain_per_s"].as_f64().expect("floor");
    assert!((ratios[0] - first).abs() < 0.001, "{summary}");
    for key in ["ratio_median", "drain_median", "floor_median", "cpu_us_per_job_median"] {
        assert!(summary[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {summary}");
    }
}

/// `--work-ms` makes each job take that long: 200 jobs of 50 ms through 100 slots cannot drain
/// in less than 100 ms (a lower bound that sleeping guarantees, not a speed).
#[test]
fn jobs_with_work_ms_take_that_long_each() {
    let lines = bench(&["jobs", "--jobs", "200", "--work-ms", "50"]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["work_ms"], 50);
    let drain = lines[0]["drain_per_s"].as_f64().expect("drain");
    assert!(drain > 0.0 && drain <= 2_000.0, "200 jobs of 50 ms through 100 slots: {}", lines[0]);
    let noop = run("on");
    assert!(noop["work_ms"].is_null(), "{noop}");
}
