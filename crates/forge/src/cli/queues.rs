//! `forge queues list|pause|resume`.

use clap::Subcommand;
use forge::jobs;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::output::{db_error, done, print_json};

/// `forge queues …`.
#[derive(Debug, Subcommand)]
pub(crate) enum QueuesAction {
    /// Every queue with unfinished jobs or a pause: its depth by state and whether it is paused.
    List,
    /// Pause a queue: from the next claim on, no node takes its jobs (running ones finish).
    Pause {
        /// The queue.
        name: String,
    },
    /// Resume a paused queue.
    Resume {
        /// The queue.
        name: String,
    },
}

impl QueuesAction {
    /// Whether the command only reads.
    pub(crate) fn is_read_only(&self) -> bool {
        matches!(self, Self::List)
    }
}

fn checked(name: &str) -> Result<&str, String> {
    if name.is_empty() || name.len() > 200 {
        return Err("a queue name is 1 to 200 characters".to_owned());
    }
    Ok(name)
}

pub(crate) async fn queues(pool: &PgPool, action: QueuesAction, json: bool) -> Result<(), String> {
    match action {
        QueuesAction::List => {
            let queues = jobs::queue_summaries(pool).await.map_err(db_error)?;
            if json {
                let rows: Vec<Value> = queues
                    .iter()
                    .map(|(name, q)| json!({ "name": name, "depth": q.depth, "paused_at": q.paused_at }))
                    .collect();
                return print_json(&rows);
            }
            println!(
                "{:<24} {:>9} {:>9} {:>9} {:>9}  PAUSED",
                "QUEUE", "AVAILABLE", "SCHEDULED", "RUNNING", "RETRYABLE"
            );
            for (name, q) in &queues {
                let n = |s: &str| q.depth.get(s).copied().unwrap_or(0);
                let paused = q.paused_at.map_or("-".to_owned(), |t| format!("since {}", t.to_rfc3339()));
                println!(
                    "{:<24} {:>9} {:>9} {:>9} {:>9}  {paused}",
                    name,
                    n("available"),
                    n("scheduled"),
                    n("running"),
                    n("retryable")
                );
            }
            if queues.is_empty() {
                println!("(no queue has unfinished jobs or a pause)");
            }
            Ok(())
        }
        QueuesAction::Pause { name } => {
            jobs::pause_queue(pool, checked(&name)?, "forge-cli").await.map_err(db_error)?;
            done(json, json!({ "queue": name, "paused": true }), &format!("queue {name} paused"))
        }
        QueuesAction::Resume { name } => {
            let was_paused = jobs::resume_queue(pool, checked(&name)?).await.map_err(db_error)?;
            let message =
                if was_paused { format!("queue {name} resumed") } else { format!("queue {name} was not paused") };
            done(json, json!({ "queue": name, "paused": false, "was_paused": was_paused }), &message)
        }
    }
}
