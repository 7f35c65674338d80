//! `forge crons list|trigger|pause|resume`, from what the application's nodes record in
//! `forge_crons` at start-up.

use chrono::Utc;
use clap::Subcommand;
use forge::core::schedule::CronSchedule;
use forge::cron::{self, KnownCron};
use forge::jobs;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::output::{db_error, done, print_json};

/// `forge crons …`.
#[derive(Debug, Subcommand)]
pub(crate) enum CronsAction {
    /// Every cron: its schedule, next tick, whether it is paused, its latest run.
    List,
    /// Run a cron now, outside its schedule (also while paused).
    Trigger {
        /// The cron's name.
        name: String,
    },
    /// Pause a cron: its ticks fire nothing until it is resumed (no catching up after).
    Pause {
        /// The cron's name.
        name: String,
    },
    /// Resume a paused cron.
    Resume {
        /// The cron's name.
        name: String,
    },
}

impl CronsAction {
    /// Whether the command only reads.
    pub(crate) fn is_read_only(&self) -> bool {
        matches!(self, Self::List)
    }
}

/// The recorded cron `name`, or an error listing the crons there are.
fn find<'a>(crons: &'a [KnownCron], name: &str) -> Result<&'a KnownCron, String> {
    crons.iter().find(|c| c.name == name).ok_or_else(|| {
        if crons.is_empty() {
            format!("unknown cron {name:?}: no node of this application has recorded its crons yet (start it once)")
        } else {
            let names: Vec<&str> = crons.iter().map(|c| c.name.as_str()).collect();
            format!("unknown cron {name:?}; the application's crons are: {}", names.join(", "))
        }
    })
}

pub(crate) async fn crons(pool: &PgPool, action: CronsAction, json: bool) -> Result<(), String> {
    let known = cron::known_crons(pool).await.map_err(db_error)?;
    match action {
        CronsAction::List => {
            let rows: Vec<Value> = known
                .iter()
                .map(|c| {
                    let next =
                        CronSchedule::parse(&c.expression, &c.timezone).ok().and_then(|s| s.next_after(Utc::now()));
                    let mut row = serde_json::to_value(c).unwrap_or(Value::Null);
                    row["next"] = json!(next);
                    row
                })
                .collect();
            if json {
                return print_json(&rows);
            }
            println!("{:<24} {:<18} {:<22} {:<8} LAST RUN", "CRON", "SCHEDULE", "NEXT", "PAUSED");
            for (c, row) in known.iter().zip(&rows) {
                let next = row["next"].as_str().map_or("-".to_owned(), |t| t.chars().take(19).collect());
                let last = match (c.last_run_at, &c.last_status) {
                    (Some(at), Some(status)) => {
                        let job = c.last_job_id.map(|j| format!(" (job {j})")).unwrap_or_default();
                        format!("{} {status}{job}", at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    }
                    _ => "never".to_owned(),
                };
                let schedule =
                    if c.timezone == "UTC" { c.expression.clone() } else { format!("{} {}", c.expression, c.timezone) };
                let paused = if c.paused_at.is_some() { "yes" } else { "no" };
                println!("{:<24} {:<18} {:<22} {:<8} {last}", c.name, schedule, next, paused);
            }
            if known.is_empty() {
                println!("(no crons recorded: start the application once)");
            }
            Ok(())
        }
        CronsAction::Trigger { name } => {
            let cron = find(&known, &name)?;
            let kinds = jobs::known_kinds(pool).await.map_err(db_error)?;
            let kind = kinds.iter().find(|k| k.kind == cron.job_kind).ok_or_else(|| {
                format!("cron {name}'s job kind {} is not recorded (start the application once)", cron.job_kind)
            })?;
            let id = cron::trigger_known(pool, cron, kind, "forge-cli").await.map_err(|e| e.to_string())?;
            done(json, json!({ "cron": name, "job_id": id }), &format!("cron {name} triggered: job {id}"))
        }
        CronsAction::Pause { name } => {
            let cron = find(&known, &name)?;
            cron::pause_cron(pool, &cron.name, "forge-cli").await.map_err(db_error)?;
            done(json, json!({ "cron": name, "paused": true }), &format!("cron {name} paused"))
        }
        CronsAction::Resume { name } => {
            let cron = find(&known, &name)?;
            let was_paused = cron::resume_cron(pool, &cron.name).await.map_err(db_error)?;
            let message =
                if was_paused { format!("cron {name} resumed") } else { format!("cron {name} was not paused") };
            done(json, json!({ "cron": name, "paused": false, "was_paused": was_paused }), &message)
        }
    }
}
