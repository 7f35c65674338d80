//! `forge-bench api` prints its JSON line with nothing duplicated or lost, with the whole
//! pipeline and with `--submit-only` (one-second smoke runs; the figures come from release
//! builds, see website/src/performance.md).

use std::process::Command;

fn run(extra: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_forge-bench"))
        .args(["api", "--seconds", "1", "--clients", "2", "--connections", "4", "--watchers", "2"])
        .args(extra)
        .output()
        .expect("run forge-bench");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().expect("a line")).expect("JSON")
}

#[test]
fn the_api_bench_loses_and_duplicates_nothing() {
    let report = run(&[]);
    assert_eq!(report["bench"], "api");
    let submitted = report["submitted"].as_u64().expect("submitted");
    assert!(submitted > 0, "{report}");
    assert_eq!(report["duplicates_created"], 0, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["webhooks_delivered"], submitted, "{report}");
    assert_eq!(report["webhooks_duplicated_without_same_id"], 0, "{report}");

    let alone = run(&["--submit-only"]);
    assert_eq!(alone["submit_only"], true);
    assert!(alone["submitted"].as_u64().is_some_and(|n| n > 0), "{alone}");
    assert_eq!(alone["duplicates_created"], 0, "{alone}");
    assert_eq!(alone["lost"], 0, "{alone}");
    assert_eq!(alone["webhooks_delivered"], 0, "{alone}");
}
