//! Leader election: a session-level advisory lock held on a dedicated connection.
//!
//! A node with the scheduler role campaigns: it tries `pg_try_advisory_lock` on a connection of
//! its own (not from the pool) every `heartbeat_interval`. The winner records its term in
//! `forge_leaders` and starts the leader duties (job maintenance, dead-node sweeps, and crons as
//! they arrive). It renews the term on the same connection every half interval; if that fails,
//! the connection (and with it the lock, which Postgres releases when a session ends) may be
//! gone, so the node stops its duties at once, drops the connection and campaigns again. Two
//! nodes can never both hold the lock, and a node acts as leader only while its renewals
//! succeed. On shutdown the leader stops its duties, unlocks and deletes its row.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::duties::LeaderDuties;
use super::sql;

/// The role the scheduler nodes compete for.
pub const SCHEDULER_ROLE: &str = "scheduler";

/// Timing of a campaign.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeaderSettings {
    /// How often a non-leader tries for the lock.
    pub(crate) campaign_every: Duration,
    /// How often the leader renews its term (and checks its lock connection).
    pub(crate) renew_every: Duration,
    /// How long a recorded term lasts without renewal.
    pub(crate) term: Duration,
}

/// A running campaign for one role.
#[derive(Debug)]
pub(crate) struct Leadership {
    is_leader: Arc<AtomicBool>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

enum Ended {
    Stopped,
    Lost,
}

impl Leadership {
    pub(crate) fn spawn(pool: PgPool, node_id: String, settings: LeaderSettings, duties: LeaderDuties) -> Self {
        let is_leader = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let task = tokio::spawn(campaign(pool, node_id, settings, duties, is_leader.clone(), stop.clone()));
        Self { is_leader, stop, task }
    }

    /// The flag that says whether this node leads, for `/metrics`.
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.is_leader.clone()
    }

    /// Whether this node leads now.
    pub(crate) fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::SeqCst)
    }

    /// Stops the duties, releases the lock and the recorded term.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn campaign(
    pool: PgPool,
    node_id: String,
    settings: LeaderSettings,
    duties: LeaderDuties,
    is_leader: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let options = pool.connect_options().as_ref().clone();
    loop {
        let mut conn = match PgConnection::connect_with(&options).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the leader-election connection");
                tokio::select! {
                    () = tokio::time::sleep(settings.campaign_every) => continue,
                    () = stop.cancelled() => return,
                }
            }
        };
        bound_session(&mut conn, settings.term).await;
        loop {
            let won = match sqlx::query_scalar::<_, bool>(sql::TRY_LOCK).bind(SCHEDULER_ROLE).fetch_one(&mut conn).await
            {
                Ok(won) => won,
                Err(_) => break,
            };
            if won {
                match lead(&mut conn, &node_id, settings, &duties, &is_leader, &stop).await {
                    Ended::Stopped => {
                        let _ = conn.close().await;
                        return;
                    }
                    // The connection is suspect: drop it (releasing the lock if it still held it),
                    // and let the others campaign before this node tries again.
                    Ended::Lost => {
                        drop(conn);
                        tokio::select! {
                            () = tokio::time::sleep(settings.campaign_every) => break,
                            () = stop.cancelled() => return,
                        }
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(settings.campaign_every) => {}
                () = stop.cancelled() => {
                    let _ = conn.close().await;
                    return;
                }
            }
        }
    }
}

async fn lead(
    conn: &mut PgConnection,
    node_id: &str,
    settings: LeaderSettings,
    duties: &LeaderDuties,
    is_leader: &AtomicBool,
    stop: &CancellationToken,
) -> Ended {
    if !term_query(sql::BEGIN_TERM, conn, node_id, settings).await {
        return Ended::Lost;
    }
    is_leader.store(true, Ordering::SeqCst);
    tracing::info!(node = node_id, "became the leader");
    let term_token = CancellationToken::new();
    let running = duties.start(term_token.clone());
    let ended = loop {
        tokio::select! {
            () = tokio::time::sleep(settings.renew_every) => {
                if !term_query(sql::RENEW_TERM, conn, node_id, settings).await {
                    tracing::warn!(node = node_id, "lost the leader lock's connection; stepping down");
                    break Ended::Lost;
                }
            }
            () = stop.cancelled() => break Ended::Stopped,
        }
    };
    // Stop acting as leader before anything else.
    is_leader.store(false, Ordering::SeqCst);
    term_token.cancel();
    let _ = running.await;
    if matches!(ended, Ended::Stopped) {
        let _ = sqlx::query(sql::RESIGN).bind(SCHEDULER_ROLE).bind(node_id).execute(&mut *conn).await;
        let _ = sqlx::query(sql::UNLOCK).bind(SCHEDULER_ROLE).execute(&mut *conn).await;
        tracing::info!(node = node_id, "resigned leadership");
    }
    ended
}

/// Makes the server end the lock's session (releasing the lock) once it has heard nothing from
/// this node for a term: a leader that is frozen (SIGSTOP, a stalled VM) or cut off stops
/// leading within `term` on the server's own clock, though its process cannot say so.
///
/// - `idle_session_timeout = term`: a healthy leader renews every half heartbeat and a
///   campaigner tries every heartbeat (at most half a term), so only a silent node hits it;
/// - `tcp_user_timeout = term` and keepalives every 2 s: a peer that stops acknowledging is
///   dropped even while the server waits on it.
///
/// A server that lacks one of these settings (`idle_session_timeout` is PostgreSQL 14+) keeps
/// the others; the node says so in its log.
async fn bound_session(conn: &mut PgConnection, term: Duration) {
    let millis = term.as_millis().max(1000).to_string();
    let settings = [
        ("idle_session_timeout", millis.as_str()),
        ("tcp_user_timeout", millis.as_str()),
        ("tcp_keepalives_idle", "2"),
        ("tcp_keepalives_interval", "2"),
        ("tcp_keepalives_count", "3"),
    ];
    for (name, value) in settings {
        if let Err(e) = sqlx::query(sql::SET_SESSION).bind(name).bind(value).execute(&mut *conn).await {
            tracing::warn!(setting = name, error = %e, "cannot bound the leader lock's session");
        }
    }
}

/// Begins or extends the term on the lock's connection; `false` if that did not succeed within
/// half the term. A slow database is not a lost lock (the lock lives with the connection, and
/// nobody else can take it meanwhile), so a loaded server does not make the leader step down;
/// an error, or no answer within half the term, does.
async fn term_query(statement: &'static str, conn: &mut PgConnection, node_id: &str, settings: LeaderSettings) -> bool {
    let query =
        sqlx::query(statement).bind(SCHEDULER_ROLE).bind(node_id).bind(settings.term.as_secs_f64()).execute(conn);
    let patience = (settings.term / 2).max(settings.renew_every);
    matches!(tokio::time::timeout(patience, query).await, Ok(Ok(_)))
}
