//! The pipeline: `request_report` (a mutation) records a request and dispatches
//! `build_report` in the same transaction; `build_report` aggregates the period's orders and
//! dispatches `email_report`; `email_report` writes the message to the outbox, retried with
//! backoff when the "mail server" refuses; `nightly_reports` (a cron) requests every
//! subscriber's report at 02:00 Paris time.

use chrono::{DateTime, Utc};
use forge::prelude::*;
use serde::{Deserialize, Serialize};

/// The period a report covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
}

impl Period {
    fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
        }
    }
}

/// `request_report`'s arguments.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReportRequest {
    /// Who gets the report.
    pub email: String,
    /// What it covers.
    pub period: Period,
}

/// `build_report`'s and `email_report`'s arguments: the request.
#[derive(Debug, Serialize, Deserialize)]
pub struct RequestId {
    /// The `report_requests` row.
    pub request: i64,
}

/// A request's state, as `report_status` answers it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReportStatus {
    /// `requested`, `built` or `delivered`.
    pub status: String,
    /// Orders counted (once built).
    pub orders: Option<i64>,
    /// Their total, in cents (once built).
    pub total_cents: Option<i64>,
    /// When it was mailed.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A `report_requests` row as `report_status` reads it.
type StatusRow = (String, Option<i64>, Option<i64>, Option<DateTime<Utc>>);

/// Records a report request and dispatches its build; answers the request's id.
/// `POST /rpc/request_report` with `{"email": "ops@example.com", "period": "day"}`.
#[forge::mutation(public, rate_limit(requests = 30, per = "1m", key = "ip"))]
pub async fn request_report(ctx: &MutationContext, args: ReportRequest) -> Result<i64, ForgeError> {
    if !args.email.contains('@') {
        return Err(ForgeError::invalid_field("email", "is not an email address"));
    }
    let id: i64 = forge::sqlx::query_scalar("insert into report_requests (email, period) values ($1, $2) returning id")
        .bind(&args.email)
        .bind(args.period.as_str())
        .fetch_one(&mut ctx.tx().await?)
        .await?;
    ctx.dispatch::<BuildReport>(RequestId { request: id }).await?;
    Ok(id)
}

/// A request's state. `POST /rpc/report_status` with the request's id.
#[forge::query(public)]
pub async fn report_status(ctx: &QueryContext, request: i64) -> Result<ReportStatus, ForgeError> {
    let row: Option<StatusRow> =
        forge::sqlx::query_as("select status, orders, total_cents, delivered_at from report_requests where id = $1")
            .bind(request)
            .fetch_optional(ctx.db())
            .await?;
    let (status, orders, total_cents, delivered_at) =
        row.ok_or_else(|| ForgeError::NotFound(format!("no report request {request}")))?;
    Ok(ReportStatus { status, orders, total_cents, delivered_at })
}

/// Aggregates the period's orders into the request, then dispatches the mail. Transactional:
/// the figures and the mail job commit together, or the job runs again from scratch.
#[forge::job(queue = "reports", max_attempts = 5, timeout = "2m", transactional)]
pub async fn build_report(ctx: &JobContext, args: RequestId) -> Result<(i64, i64), JobError> {
    let mut tx = ctx.tx().await?;
    let (orders, total): (i64, i64) = forge::sqlx::query_as(
        "update report_requests r
         set status = 'built', orders = o.n, total_cents = o.total
         from (select count(*) as n, coalesce(sum(amount_cents), 0)::bigint as total
               from orders, report_requests q
               where q.id = $1
                 and orders.created_at > now() - case q.period when 'day' then interval '1 day' else interval '7 days' end) o
         where r.id = $1
         returning o.n, o.total",
    )
    .bind(args.request)
    .fetch_one(&mut tx)
    .await?;
    EmailReport::dispatch_in(&mut tx, RequestId { request: args.request }, DispatchOptions::new()).await?;
    forge::tracing::info!(request = args.request, orders, total, "report built");
    Ok((orders, total))
}

/// "Sends" the report: writes it to the outbox. Addresses at `flaky.example` are refused on the
/// first attempt, as a mail server under load would; the job is retried with backoff.
#[forge::job(queue = "mail", max_attempts = 8, backoff(exponential, base = "1s", max = "10m"))]
pub async fn email_report(ctx: &JobContext, args: RequestId) -> Result<(), JobError> {
    let (email, period, orders, total): (String, String, Option<i64>, Option<i64>) =
        forge::sqlx::query_as("select email, period, orders, total_cents from report_requests where id = $1")
            .bind(args.request)
            .fetch_one(ctx.db())
            .await?;
    if email.ends_with("@flaky.example") && ctx.attempt() == 1 {
        forge::tracing::warn!(to = %email, "the mail server refused the message; retrying");
        return Err(JobError::retry("421 mail server busy"));
    }
    let body = format!(
        "{} orders, {:.2} in total, over the last {period}.",
        orders.unwrap_or(0),
        total.unwrap_or(0) as f64 / 100.0
    );
    let mut tx = ctx.db().begin().await?;
    forge::sqlx::query(
        "insert into outbox (request_id, to_email, subject, body) values ($1, $2, $3, $4)
         on conflict (request_id) do nothing",
    )
    .bind(args.request)
    .bind(&email)
    .bind(format!("Your {period}ly report"))
    .bind(&body)
    .execute(&mut *tx)
    .await?;
    forge::sqlx::query("update report_requests set status = 'delivered', delivered_at = now() where id = $1")
        .bind(args.request)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Every night at 02:00 Paris time: one report request per subscriber, dispatched in one batch.
#[forge::cron("0 2 * * *", timezone = "Europe/Paris")]
pub async fn nightly_reports(ctx: &CronContext) -> Result<(), JobError> {
    let ids: Vec<i64> = forge::sqlx::query_scalar(
        "insert into report_requests (email, period)
         select email, period from report_subscriptions
         returning id",
    )
    .fetch_all(ctx.db())
    .await?;
    let args: Vec<RequestId> = ids.iter().map(|&request| RequestId { request }).collect();
    BuildReport::dispatch_many(ctx.db(), args, DispatchOptions::new()).await?;
    forge::tracing::info!(requests = ids.len(), "nightly reports requested");
    Ok(())
}
