//! A sample feature: people sign up (a mutation), get a welcome message (a job the mutation
//! dispatches in its transaction), are counted (a query), and a digest runs every morning (a
//! cron). Replace it with your own.

use forge::prelude::*;
use serde::{Deserialize, Serialize};

/// What `sign_up` takes, and what `send_welcome` gets.
#[derive(Debug, Serialize, Deserialize)]
pub struct SignUp {
    /// Who signs up.
    pub email: String,
}

/// Records a sign-up and dispatches its welcome message; both commit together or not at all.
/// `POST /rpc/sign_up` with `{"email": "ada@example.com"}` answers the job's id.
#[forge::mutation(public)]
pub async fn sign_up(ctx: &MutationContext, args: SignUp) -> Result<JobId, ForgeError> {
    let email = args.email.trim().to_lowercase();
    if !email.contains('@') {
        return Err(ForgeError::invalid_field("email", "is not an email address"));
    }
    forge::sqlx::query("insert into signups (email) values ($1) on conflict (email) do nothing")
        .bind(&email)
        .execute(&mut ctx.tx().await?)
        .await?;
    ctx.dispatch::<SendWelcome>(SignUp { email }).await
}

/// How many people signed up. `POST /rpc/signup_count` with `null`.
#[forge::query(public)]
pub async fn signup_count(ctx: &QueryContext, _args: ()) -> Result<i64, ForgeError> {
    Ok(forge::sqlx::query_scalar("select count(*) from signups").fetch_one(ctx.db()).await?)
}

/// Welcomes someone. Retried with backoff if it fails, up to 5 attempts.
#[forge::job(max_attempts = 5)]
pub async fn send_welcome(ctx: &JobContext, args: SignUp) -> Result<String, JobError> {
    forge::tracing::info!(attempt = ctx.attempt(), "welcoming {}", args.email);
    forge::sqlx::query("update signups set welcomed_at = now() where email = $1")
        .bind(&args.email)
        .execute(ctx.db())
        .await?;
    Ok(format!("welcome, {}", args.email))
}

/// Every day at 08:00 UTC, once across all running copies of the app.
#[forge::cron("0 8 * * *")]
pub async fn daily_digest(ctx: &CronContext) -> Result<(), JobError> {
    let count: i64 = forge::sqlx::query_scalar("select count(*) from signups where created_at > now() - interval '1 day'")
        .fetch_one(ctx.db())
        .await?;
    forge::tracing::info!(count, "sign-ups in the last day");
    Ok(())
}
