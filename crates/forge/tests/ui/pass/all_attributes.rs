use forge::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub id: i64,
}

#[forge::job(
    name = "reports.build",
    queue = "reports",
    priority = high,
    max_attempts = 5,
    backoff(exponential, base = "2s", max = "10m", jitter = 0.2),
    timeout = "90s",
    worker_capability = "gpu",
    unique(args, period = "1h"),
    transactional,
    api
)]
async fn build_report(_ctx: &JobContext, args: Report) -> Result<i64, JobError> {
    Ok(args.id)
}

#[forge::job(unique(key), timeout = 30, backoff(fixed, base = "5s"))]
async fn plain(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

fn main() {
    let options = BuildReport::options();
    assert_eq!(BuildReport::NAME, "reports.build");
    assert_eq!(options.queue, "reports");
    assert_eq!(options.priority, Priority::High);
    assert_eq!(options.max_attempts, 5);
    assert_eq!(options.timeout, std::time::Duration::from_secs(90));
    assert_eq!(options.capability, Some("gpu"));
    assert!(options.transactional);
    assert!(options.api);
    assert!(!Plain::options().api);
    assert_eq!(Plain::NAME, "plain");
    assert_eq!(Plain::options().timeout, std::time::Duration::from_secs(30));
}
