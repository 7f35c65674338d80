//! Shutdown: the first SIGINT or SIGTERM asks every component to stop (running jobs get
//! `[worker] shutdown_timeout` to finish); a second one releases the running jobs at once, so
//! another node runs them now rather than after their lease expires; a third exits at once with
//! status 130.

use tokio_util::sync::CancellationToken;

pub use crate::jobs::ForceStop;

/// A handle that asks a running node to stop. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A handle that has not been triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the node to stop.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether [`Shutdown::trigger`] has been called.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once the node has been asked to stop.
    pub async fn triggered(&self) {
        self.token.cancelled().await;
    }

    /// A token that is cancelled with this handle, for components that take one.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

/// SIGINT and SIGTERM listeners. Installed when a node starts, so a signal that arrives before
/// anything waits for it (say, while the application dispatches its first jobs) is kept rather
/// than killing the process.
#[derive(Debug)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the listeners.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    /// Waits for SIGINT or SIGTERM and returns its name. After it returns, a second signal ends
    /// the process at once (exit status 130), for an operator who does not want to wait for
    /// draining.
    pub async fn wait(self) -> &'static str {
        let (name, force) = self.wait_then_force().await;
        tokio::spawn(async move {
            force.forced().await;
            eprintln!("second signal: exiting without waiting");
            std::process::exit(130);
        });
        name
    }

    /// Waits for SIGINT or SIGTERM and returns its name with a [`ForceStop`] that fires on the
    /// next signal (a node then releases its running jobs instead of waiting for them). A third
    /// signal ends the process at once (exit status 130).
    pub async fn wait_then_force(mut self) -> (&'static str, ForceStop) {
        let name = self.next().await;
        let force = ForceStop::default();
        let fired = force.clone();
        tokio::spawn(async move {
            self.next().await;
            fired.fire();
            self.next().await;
            eprintln!("third signal: exiting without releasing the running jobs (the leader rescues them)");
            std::process::exit(130);
        });
        (name, force)
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Installs the listeners and waits for SIGINT or SIGTERM; see [`Signals::wait`].
pub async fn wait_for_signal() -> std::io::Result<&'static str> {
    Ok(Signals::install()?.wait().await)
}
