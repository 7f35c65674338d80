//! The leader's dead-node sweep: nodes silent past `[node] dead_after` are declared dead and
//! their running jobs rescued at once (by the job engine's one rescue statement), without
//! waiting for their leases to expire.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::sql;
use crate::jobs::maintenance::Grace;

/// The leader's sweep: declares dead the nodes silent past `dead_after` and rescues their
/// running jobs at once, every `every`, until `stop`.
pub(super) async fn sweep_dead_nodes(
    pool: PgPool,
    dead_after: Duration,
    every: Duration,
    grace: Duration,
    stop: CancellationToken,
) {
    // Nodes that could not heartbeat while the leader could not see them either are not dead:
    // the sweep starts a grace after the term, and after every failure (see `jobs::maintenance`).
    let mut grace = Grace::new(grace);
    loop {
        let result = if grace.armed() { sweep_once(&pool, dead_after).await } else { Ok((Vec::new(), 0)) };
        if result.is_err() {
            grace.failed();
        }
        match result {
            Ok((nodes, jobs)) if !nodes.is_empty() => {
                tracing::warn!(?nodes, rescued = jobs, "declared nodes dead and rescued their jobs");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "dead-node sweep failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn sweep_once(pool: &PgPool, dead_after: Duration) -> Result<(Vec<String>, usize), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let dead: Vec<String> =
        sqlx::query_scalar(sql::MARK_DEAD).bind(dead_after.as_secs_f64()).fetch_all(&mut *tx).await?;
    let rescued = if dead.is_empty() {
        0
    } else {
        let lost = crate::jobs::maintenance::Lost::OnNodes(&dead);
        crate::jobs::maintenance::rescue(&mut tx, lost, i64::MAX).await?.len()
    };
    tx.commit().await?;
    Ok((dead, rescued))
}
