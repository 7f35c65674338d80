//! Small helpers for reporting.

use std::time::Duration;

/// What a scenario returns: one JSON line, or why it could not run.
pub(crate) type Report = Result<serde_json::Value, Box<dyn std::error::Error>>;

/// Milliseconds, two decimals.
pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

/// The `q` quantile (0.0–1.0) of sorted samples.
pub(crate) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50, p90 and max of the samples, in milliseconds.
pub(crate) fn summary(samples: &mut [Duration]) -> serde_json::Value {
    samples.sort();
    serde_json::json!({
        "p50": ms(quantile(samples, 0.5)),
        "p90": ms(quantile(samples, 0.9)),
        "max": ms(quantile(samples, 1.0)),
    })
}

/// `n` per second over `d`, rounded.
pub(crate) fn per_second(n: usize, d: Duration) -> f64 {
    (n as f64 / d.as_secs_f64().max(1e-9)).round()
}

/// CPU time spent so far, read from Linux's `/proc`: by the whole machine (every core, busy
/// states only: idle, I/O wait and time stolen by the hypervisor are left out) and by this
/// process. Throughput on a shared VM swings with its neighbours; CPU time per job does not, so
/// comparing two runs by it is far steadier than by jobs per second.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuTime {
    machine: Option<Duration>,
    process: Option<Duration>,
}

impl CpuTime {
    /// The counters now (`None` where `/proc` cannot be read).
    pub(crate) fn now() -> Self {
        Self { machine: machine_busy(), process: process_busy() }
    }

    /// `{"machine_us_per_job", "bench_process_us_per_job"}` since `start`, over `jobs` jobs.
    pub(crate) fn per_job_since(start: Self, jobs: usize) -> serde_json::Value {
        let (machine, process) = Self::per_unit_since(start, jobs);
        serde_json::json!({
            "machine_us_per_job": machine,
            "bench_process_us_per_job": process,
        })
    }

    /// Microseconds of CPU per unit of work (`units` of them) since `start`: the machine's
    /// and this process's.
    pub(crate) fn per_unit_since(start: Self, units: usize) -> (Option<f64>, Option<f64>) {
        let end = Self::now();
        let per_unit = |a: Option<Duration>, b: Option<Duration>| {
            a.zip(b)
                .map(|(a, b)| (b.saturating_sub(a).as_secs_f64() * 1e6 / units.max(1) as f64 * 100.0).round() / 100.0)
        };
        (per_unit(start.machine, end.machine), per_unit(start.process, end.process))
    }
}

/// Clock ticks per second as `/proc` counts them (`USER_HZ`, 100 on every Linux we run on).
const TICKS_PER_SECOND: f64 = 100.0;

fn ticks(n: u64) -> Duration {
    Duration::from_secs_f64(n as f64 / TICKS_PER_SECOND)
}

/// user + nice + system + irq + softirq over every core, from `/proc/stat`'s `cpu` line.
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let field = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(ticks(field(0) + field(1) + field(2) + field(5) + field(6)))
}

/// utime + stime of this process, from `/proc/self/stat` (fields 14 and 15).
fn process_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after it are plain.
    let rest = stat.rsplit_once(')')?.1;
    let v: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    // `rest` starts at field 3 (state), so fields 14 and 15 are at 11 and 12.
    Some(ticks(v.get(11)? + v.get(12)?))
}

/// The median of `v` (0 when empty).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `x` rounded to `places` decimals.
pub(crate) fn round(x: f64, places: i32) -> f64 {
    (x * 10f64.powi(places)).round() / 10f64.powi(places)
}

/// Runs this binary's `args` in a process of its own and returns the JSON line it printed.
async fn run_child(args: &[String]) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!("`forge-bench {}` failed ({})", args.join(" "), out.status).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Runs `floor` and `subject` (argument lists of this binary) alternately `pairs` times, each
/// in its own process, the order flipped every pair so neither always runs on a warmer
/// machine; prints every run's line and returns each pair as (floor's line, subject's line).
pub(crate) async fn alternate(
    pairs: usize,
    floor: &[String],
    subject: &[String],
) -> Result<Vec<(serde_json::Value, serde_json::Value)>, Box<dyn std::error::Error>> {
    async fn run(args: &[String]) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
        let line = run_child(args).await?;
        println!("{line}");
        Ok(line)
    }
    let mut runs = Vec::with_capacity(pairs);
    for pair in 0..pairs {
        runs.push(if pair % 2 == 0 {
            let first = run(floor).await?;
            (first, run(subject).await?)
        } else {
            let first = run(subject).await?;
            (run(floor).await?, first)
        });
    }
    Ok(runs)
}
