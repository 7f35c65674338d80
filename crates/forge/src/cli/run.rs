//! `forge run`: the application, built and run with cargo.

use std::path::Path;

/// `forge run`: builds and runs the application in `project` with cargo, passing the
/// environment and `args`; answers its exit status.
pub(crate) async fn run_app(project: &Path, release: bool, args: &[String]) -> Result<std::process::ExitCode, String> {
    if !project.join("Cargo.toml").is_file() {
        return Err(format!(
            "no Cargo.toml in {}: run `forge run` in a Forge application's folder (`forge new NAME` creates one)",
            project.display()
        ));
    }
    let mut command = tokio::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.arg("run").current_dir(project);
    if release {
        command.arg("--release");
    }
    command.arg("--").args(args);
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "cargo not found: install Rust from https://rustup.rs".to_owned(),
        _ => format!("cannot run cargo: {e}"),
    })?;
    // `cargo run` becomes the application (it execs it), so the child is the app. A SIGTERM
    // sent to `forge run` is passed on once (the app drains and exits); Ctrl-C reaches the whole
    // terminal's process group, the app included, so it is only waited out here.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("cannot handle signals: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle signals: {e}"))?;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(|e| format!("cannot wait for the app: {e}"))?,
            _ = term.recv() => {
                if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
                    // SAFETY: kill(2) with a pid this process spawned and has not reaped yet.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
            }
            _ = int.recv() => {}
        }
    };
    Ok(match status.code() {
        Some(0) => std::process::ExitCode::SUCCESS,
        Some(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => std::process::ExitCode::from(130),
    })
}
