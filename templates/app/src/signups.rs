//! A sample feature: people sign up (a mutation), get a welcome message (a job the mutation
//! dispatches in its transaction), are counted (a query), and a digest of the day's sign-ups is
//! sent every morning (a cron that dispatches a job), and listed live (a query web/index.html
//! subscribes to over `/ws`). Replace it with your own.

use forge::prelude::*;
use serde::{Deserialize, Serialize};

/// What `sign_up` takes, and what `send_welcome` gets.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
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

/// One sign-up, as `recent_signups` lists it.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct RecentSignup {
    /// Who signed up.
    pub email: String,
    /// Whether the welcome message went out.
    pub welcomed: bool,
    /// Whether every attempt to welcome them failed.
    pub welcome_failed: bool,
}

/// The latest sign-ups, newest first (at most 50). Live: a page subscribed to it over `/ws`
/// gets the new list whenever a transaction changes `signups` (see web/index.html).
#[forge::query(public, reads = ["signups"])]
pub async fn recent_signups(ctx: &QueryContext, _args: ()) -> Result<Vec<RecentSignup>, ForgeError> {
    let rows: Vec<(String, bool, bool)> = forge::sqlx::query_as(
        "select email, welcomed_at is not null, welcome_failed from signups order by id desc limit 50",
    )
    .fetch_all(ctx.db())
    .await?;
    Ok(rows.into_iter().map(|(email, welcomed, welcome_failed)| RecentSignup { email, welcomed, welcome_failed }).collect())
}

/// Welcomes someone. A delivery that fails is retried with backoff, up to 5 attempts; when the
/// last one fails too, the sign-up is marked so someone can follow up.
#[forge::job(max_attempts = 5)]
pub async fn send_welcome(ctx: &JobContext, args: SignUp) -> Result<String, JobError> {
    forge::tracing::info!(attempt = ctx.attempt(), "welcoming {}", args.email);
    if let Err(e) = deliver(&args.email).await {
        if ctx.is_last_attempt() {
            forge::sqlx::query("update signups set welcome_failed = true where email = $1")
                .bind(&args.email)
                .execute(ctx.db())
                .await?;
        }
        return Err(JobError::retry(e));
    }
    forge::sqlx::query("update signups set welcomed_at = now() where email = $1")
        .bind(&args.email)
        .execute(ctx.db())
        .await?;
    Ok(format!("welcome, {}", args.email))
}

/// A stand-in for your mail provider's API: addresses at `bounce.example` always fail.
async fn deliver(email: &str) -> Result<(), String> {
    if email.ends_with("@bounce.example") {
        return Err(format!("{email}: mailbox does not exist"));
    }
    Ok(())
}

/// What `send_digest` gets: the day whose sign-ups it reports (`YYYY-MM-DD`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Digest {
    /// The day, in UTC.
    pub day: String,
}

/// Every day at 08:00 UTC, once across all running copies of the app, dispatches the digest
/// of the day before. The digest is a job of its own, so a failure retries the digest, not
/// the tick.
#[forge::cron("0 8 * * *")]
pub async fn daily_digest(ctx: &CronContext) -> Result<(), JobError> {
    let yesterday = ctx.scheduled_time() - std::time::Duration::from_secs(24 * 60 * 60);
    SendDigest::dispatch(ctx, Digest { day: yesterday.format("%Y-%m-%d").to_string() }).await?;
    Ok(())
}

/// Counts a day's sign-ups (a real app would e-mail the count).
#[forge::job]
pub async fn send_digest(ctx: &JobContext, args: Digest) -> Result<i64, JobError> {
    let count: i64 = forge::sqlx::query_scalar(
        "select count(*) from signups \
         where created_at >= $1::date::timestamp at time zone 'UTC' \
           and created_at < ($1::date + 1)::timestamp at time zone 'UTC'",
    )
    .bind(&args.day)
    .fetch_one(ctx.db())
    .await?;
    forge::tracing::info!(count, day = %args.day, "sign-ups");
    Ok(count)
}
