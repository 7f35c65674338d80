//! [`WorkflowContext`]: what a workflow's code calls to take steps, sleep, wait for events and
//! branch on versions; each call is matched against the run's recorded steps ([`super::replay`]).

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use forge_core::jobs::{JobError, JobId, JobState};
use forge_core::workflows::{RetryPolicy, StepKind, StepStatus, WorkflowError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;

use super::replay::{Position, RecordedStep, Replay};
use super::sql;
use crate::db::{Tx, TxSlot};
use crate::jobs::JobContext;
use crate::jobs::completer::{self, Outcome};

/// A boxed future, as steps and compensations are stored.
pub type StepFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Retry waits this long or shorter are slept in place; longer ones suspend the run.
const IN_PLACE_RETRY: Duration = Duration::from_secs(5);

/// When a parked (blocked) run would next run by itself: never, in practice.
fn parked_until() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("9999-12-31T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Now plus `d`, at most [`parked_until`] (what Postgres and listings handle well).
pub(crate) fn later(d: Duration) -> DateTime<Utc> {
    let far = parked_until();
    chrono::Duration::from_std(d).ok().and_then(|d| Utc::now().checked_add_signed(d)).map_or(far, |t| t.min(far))
}

/// What a test changes about an execution (`forge::testing`): a simulated crash after some
/// checkpoints, and the HTTP client steps get.
#[derive(Clone, Debug, Default)]
pub(crate) struct Overrides {
    /// End the execution as a crash would, once this many new checkpoints are written.
    pub(crate) crash_after: Option<usize>,
    /// The client [`WorkflowContext::http`] returns.
    pub(crate) http: Option<reqwest::Client>,
}

tokio::task_local! {
    /// Set by `forge::testing` around the executions it runs.
    pub(crate) static OVERRIDES: Overrides;
}

/// The HTTP client steps get by default: 5 s to connect, 30 s per request.
fn default_http_client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(30))
                .user_agent(concat!("forge/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default()
        })
        .clone()
}

/// The context of one execution of one workflow run. Cheap to clone; steps may run
/// concurrently from clones.
#[derive(Clone)]
pub struct WorkflowContext {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WorkflowContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowContext")
            .field("run", &self.inner.job.id())
            .field("workflow", &self.inner.job.kind())
            .field("version", &self.inner.version)
            .finish()
    }
}

struct Inner {
    job: JobContext,
    version: u32,
    deadline: Option<DateTime<Utc>>,
    http: reqwest::Client,
    crash_after: Option<usize>,
    state: Mutex<State>,
}

/// Why the run is being wound down instead of run forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// An operator (or the code) asked to cancel it.
    Cancel,
    /// Its whole-run timeout passed.
    Timeout,
}

/// What ended the execution early, whatever the code did with the error it was given.
#[derive(Clone, Debug)]
pub(crate) enum Interrupt {
    /// Suspended or parked, already written in the execution's own transaction.
    Written,
    /// Wind the run down (compensations, then cancelled or failed).
    Stop(Stop),
    /// Progress could not be recorded: retry the execution.
    Internal(String),
}

impl Interrupt {
    fn error(&self, blocked: Option<&str>) -> WorkflowError {
        match self {
            Interrupt::Written => match blocked {
                Some(reason) => WorkflowError::Blocked(reason.to_owned()),
                None => WorkflowError::Suspended,
            },
            Interrupt::Stop(Stop::Cancel) => WorkflowError::Cancelled,
            Interrupt::Stop(Stop::Timeout) => WorkflowError::Failed("the run's timeout passed".to_owned()),
            Interrupt::Internal(m) => WorkflowError::Internal(m.clone()),
        }
    }
}

/// A compensation registered by a completed step, with the step's recorded output.
struct Compensation {
    step: String,
    seq: i32,
    output: serde_json::Value,
    undo: Box<dyn FnOnce(serde_json::Value) -> StepFuture<'static, Result<(), JobError>> + Send>,
}

struct State {
    replay: Replay,
    interrupt: Option<Interrupt>,
    blocked: Option<String>,
    stop: Option<Stop>,
    compensations: Vec<Compensation>,
    /// New checkpoints this execution wrote (for a simulated crash).
    written: usize,
}

/// A checkpoint to write.
pub(crate) struct Record<'a> {
    pub(crate) name: &'a str,
    pub(crate) seq: i32,
    pub(crate) kind: StepKind,
    pub(crate) status: StepStatus,
    pub(crate) output: Option<serde_json::Value>,
    pub(crate) error: Option<String>,
    pub(crate) attempts: i32,
    pub(crate) wake_at: Option<DateTime<Utc>>,
    pub(crate) started_at: DateTime<Utc>,
}

/// What a checkpoint write found.
pub(crate) enum Written {
    /// This execution's record stands.
    Ours,
    /// Another execution had recorded the step's end first: its record stands.
    Theirs { status: StepStatus, output: Option<serde_json::Value>, error: Option<String> },
}

impl WorkflowContext {
    pub(crate) fn new(
        job: JobContext,
        version: u32,
        deadline: Option<DateTime<Utc>>,
        recorded: Vec<RecordedStep>,
        stop: Option<Stop>,
    ) -> Self {
        let overrides = OVERRIDES.try_with(Clone::clone).unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                job,
                version,
                deadline,
                http: overrides.http.unwrap_or_else(default_http_client),
                crash_after: overrides.crash_after,
                state: Mutex::new(State {
                    replay: Replay::new(recorded),
                    interrupt: None,
                    blocked: None,
                    stop,
                    compensations: Vec::new(),
                    written: 0,
                }),
            }),
        }
    }

    /// The run's id (its job's id).
    pub fn run_id(&self) -> JobId {
        self.inner.job.id()
    }

    /// The workflow's name.
    pub fn workflow(&self) -> &str {
        self.inner.job.kind()
    }

    /// The workflow version the run started on.
    pub fn version(&self) -> u32 {
        self.inner.version
    }

    /// The job context of this execution (its attempt, its cancellation token).
    pub fn job(&self) -> &JobContext {
        &self.inner.job
    }

    /// An HTTP client for steps that call services (5 s to connect, 30 s per request). In
    /// tests, `forge::testing::MockHttp` stands in for it.
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The pool. Database work that must happen exactly once belongs in
    /// [`WorkflowContext::tx_step`].
    pub fn db(&self) -> &PgPool {
        self.inner.job.db()
    }

    /// A memoised step: `f` runs until it succeeds (or its retries run out), its output is
    /// recorded, and every later execution of the run returns the recorded output without
    /// running `f`. At least once: a crash between `f`'s effect and the checkpoint runs it again.
    ///
    /// ```no_run
    /// # use forge_runtime::workflows::WorkflowContext;
    /// # use forge_core::workflows::{RetryPolicy, WorkflowError};
    /// # async fn demo(ctx: &WorkflowContext) -> Result<(), WorkflowError> {
    /// let charge_id: String = ctx
    ///     .step("charge", || async { Ok("ch_123".to_owned()) })
    ///     .retry(RetryPolicy::fixed(5, std::time::Duration::from_secs(2)))
    ///     .compensate(|id: String| async move { println!("refund {id}"); Ok(()) })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn step<T, F, Fut>(&self, name: &str, f: F) -> Step<'_, T, F>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T, JobError>> + Send,
    {
        Step { ctx: self, name: name.to_owned(), f, policy: RetryPolicy::default(), timeout: None, compensate: None }
    }

    /// A step whose closure runs inside a transaction that also records the step: its database
    /// effects and its checkpoint commit together, so it takes effect exactly once, across
    /// crashes and concurrent executions. Query with `&mut tx`.
    ///
    /// ```no_run
    /// # use forge_runtime::workflows::WorkflowContext;
    /// # use forge_core::workflows::WorkflowError;
    /// # async fn demo(ctx: &WorkflowContext) -> Result<(), WorkflowError> {
    /// ctx.tx_step("debit", |mut tx| async move {
    ///     sqlx::query("update accounts set balance = balance - 10 where id = 1").execute(&mut tx).await?;
    ///     Ok(())
    /// })
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn tx_step<T, F, Fut>(&self, name: &str, f: F) -> TxStep<'_, T, F>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnMut(Tx) -> Fut + Send,
        Fut: Future<Output = Result<T, JobError>> + Send,
    {
        TxStep { ctx: self, name: name.to_owned(), f, policy: RetryPolicy::default(), compensate: None }
    }

    /// Sleeps durably for `duration`: the execution ends and the run is put back as a job due
    /// at the wake time, holding no worker slot meanwhile. The wake time is recorded the first
    /// time, so later executions wait for the same instant.
    pub async fn sleep(&self, duration: Duration) -> Result<(), WorkflowError> {
        let until = later(duration);
        self.sleep_inner(until).await
    }

    /// Sleeps durably until `until` (see [`WorkflowContext::sleep`]).
    pub async fn sleep_until(&self, until: DateTime<Utc>) -> Result<(), WorkflowError> {
        self.sleep_inner(until).await
    }

    async fn sleep_inner(&self, until: DateTime<Utc>) -> Result<(), WorkflowError> {
        let (name, position) = self.position("sleep", StepKind::Sleep).await?;
        let (seq, wake) = match position {
            Recorded(r) if r.status == StepStatus::Completed => return Ok(()),
            Recorded(r) => (r.seq, r.wake_at.unwrap_or(until)),
            New(seq) => {
                self.record(Record::waiting(&name, seq, StepKind::Sleep, until)).await?;
                (seq, until)
            }
        };
        if Utc::now() >= wake {
            self.record(Record { status: StepStatus::Completed, ..Record::waiting(&name, seq, StepKind::Sleep, wake) })
                .await?;
            return Ok(());
        }
        self.suspend(wake, None).await?;
        Err(self.interrupt(Interrupt::Internal("a sleep suspended without an end".to_owned())))
    }

    /// Waits durably for the event `name` sent to this run ([`super::send_event`]), at most
    /// `timeout`: `Ok(Some(payload))` when it arrives (or had arrived before the wait),
    /// `Ok(None)` when the timeout passes first. While waiting, the run holds no worker slot.
    /// The first event of a name sent to a run is the one every wait for that name sees.
    pub async fn wait_for_event<T: DeserializeOwned>(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<T>, WorkflowError> {
        let (step, position) = self.position(name, StepKind::Event).await?;
        let (seq, deadline, suspended_before) = match position {
            Recorded(r) if r.status == StepStatus::Completed => return decode_event(name, r.output),
            Recorded(r) => (r.seq, r.wake_at.unwrap_or_else(Utc::now), true),
            New(seq) => {
                let deadline = later(timeout);
                self.record(Record::waiting(&step, seq, StepKind::Event, deadline)).await?;
                (seq, deadline, false)
            }
        };
        let payload: Option<serde_json::Value> = sqlx::query_scalar(sql::EVENT)
            .bind(self.run_id().0)
            .bind(name)
            .fetch_optional(self.db())
            .await
            .map_err(|e| self.internal(e))?;
        let received = match payload {
            Some(payload) => Some(payload),
            None if Utc::now() >= deadline => None,
            None => Some(self.suspend(deadline, Some(name)).await?),
        };
        let output = match &received {
            Some(payload) => serde_json::json!({ "payload": payload }),
            None => serde_json::json!({ "timed_out": true }),
        };
        self.record(Record {
            status: StepStatus::Completed,
            output: Some(output.clone()),
            ..Record::waiting(&step, seq, StepKind::Event, deadline)
        })
        .await?;
        if suspended_before {
            // The run waited for this event: it no longer does.
            sqlx::query(sql::NOT_WAITING)
                .bind(self.run_id().0)
                .bind(name)
                .execute(self.db())
                .await
                .map_err(|e| self.internal(e))?;
        }
        decode_event(name, Some(output))
    }

    /// Ends the execution until `until` (waiting for `event`, if given), unless the event has
    /// arrived or the run was asked to cancel. Written in the execution's own transaction, under
    /// the run's job-row lock, which [`super::send_event`] and [`super::cancel`] take first: an
    /// event or a cancel request sent at any moment is either seen here or finds the run
    /// suspended and wakes it. Returns the event's payload when it had arrived.
    async fn suspend(&self, until: DateTime<Utc>, event: Option<&str>) -> Result<serde_json::Value, WorkflowError> {
        enum Seen {
            Suspended,
            Event(serde_json::Value),
            Cancel,
            LeaseLost,
        }
        let run = self.run_id();
        let result: Result<Seen, sqlx::Error> = async {
            let mut tx = self.db().begin().await?;
            let held: Option<bool> =
                sqlx::query_scalar(sql::LOCK_ATTEMPT).bind(run.0).bind(self.attempt()).fetch_optional(&mut *tx).await?;
            match held {
                None => return Ok(Seen::LeaseLost),
                Some(true) => return Ok(Seen::Cancel),
                Some(false) => {}
            }
            if let Some(event) = event {
                let payload: Option<serde_json::Value> =
                    sqlx::query_scalar(sql::EVENT).bind(run.0).bind(event).fetch_optional(&mut *tx).await?;
                if let Some(payload) = payload {
                    tx.commit().await?;
                    return Ok(Seen::Event(payload));
                }
            }
            sqlx::query(sql::WAITING_FOR).bind(run.0).bind(event).execute(&mut *tx).await?;
            self.finish_suspended(&mut tx, self.wake_at(until)).await?;
            tx.commit().await?;
            Ok(Seen::Suspended)
        }
        .await;
        match result {
            Ok(Seen::Event(payload)) => Ok(payload),
            Ok(Seen::Suspended) => Err(self.interrupt(Interrupt::Written)),
            Ok(Seen::Cancel) => {
                self.lock().stop.get_or_insert(Stop::Cancel);
                Err(self.interrupt(Interrupt::Stop(Stop::Cancel)))
            }
            Ok(Seen::LeaseLost) => Err(self.interrupt(Interrupt::Internal("the run's lease was lost".to_owned()))),
            Err(e) => Err(self.internal(e)),
        }
    }

    /// The time, recorded: the first execution to reach this call records the clock, every
    /// later one gets the same instant. Use it instead of `Utc::now()` in workflow code.
    pub async fn workflow_time(&self) -> Result<DateTime<Utc>, WorkflowError> {
        let (name, position) = self.position("time", StepKind::Time).await?;
        match position {
            Recorded(r) => decode(&name, r.output),
            New(seq) => {
                let now = Utc::now();
                let output = serde_json::to_value(now).map_err(|e| WorkflowError::Internal(e.to_string()))?;
                self.record(Record {
                    status: StepStatus::Completed,
                    output: Some(output),
                    ..Record::waiting(&name, seq, StepKind::Time, now)
                })
                .await?;
                Ok(now)
            }
        }
    }

    /// Runs `steps` concurrently and returns their results in order. Their positions in the
    /// record follow the order given, whatever order they finish in, so a replay matches.
    /// (Awaiting steps with `futures::join!` does the same: each takes its position on its
    /// first poll, in the order the macro lists them.)
    ///
    /// The steps are taken from `steps` at once, so the iterator (and any closure in it) is
    /// not held across an await.
    pub fn join<I>(&self, steps: I) -> futures_util::future::JoinAll<<I::Item as IntoFuture>::IntoFuture>
    where
        I: IntoIterator,
        I::Item: IntoFuture,
    {
        futures_util::future::join_all(steps.into_iter().map(IntoFuture::into_future))
    }

    /// Whether this run takes the code path introduced with the change `id`: true for runs
    /// that reach this point on code that has the call (a marker is recorded), false for runs
    /// that had already passed it on the old code. Once no run that passed it on the old code
    /// is left, remove the call and keep the new path: recorded markers are then skipped.
    ///
    /// ```no_run
    /// # use forge_runtime::workflows::WorkflowContext;
    /// # use forge_core::workflows::WorkflowError;
    /// # async fn demo(ctx: &WorkflowContext) -> Result<(), WorkflowError> {
    /// if ctx.patched("sms-instead-of-email").await? {
    ///     ctx.step("send_sms", || async { Ok(()) }).await?;
    /// } else {
    ///     ctx.step("send_email", || async { Ok(()) }).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn patched(&self, id: &str) -> Result<bool, WorkflowError> {
        let seq = {
            let mut state = self.lock();
            if let Some(i) = &state.interrupt {
                return Err(i.error(state.blocked.as_deref()));
            }
            match state.replay.patch(id) {
                (taken, None) => return Ok(taken),
                (_, Some(seq)) => {
                    if let Some(stop) = state.stop {
                        let interrupt = Interrupt::Stop(stop);
                        let error = interrupt.error(None);
                        state.interrupt = Some(interrupt);
                        return Err(error);
                    }
                    seq
                }
            }
        };
        let now = Utc::now();
        self.record(Record { status: StepStatus::Completed, ..Record::waiting(id, seq, StepKind::Patch, now) }).await?;
        Ok(true)
    }

    // ---- internals -------------------------------------------------------------------

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn attempt(&self) -> i32 {
        i32::try_from(self.inner.job.attempt()).unwrap_or(i32::MAX)
    }

    /// The wake time capped at the run's deadline.
    fn wake_at(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        self.inner.deadline.map_or(at, |deadline| at.min(deadline))
    }

    /// Sets what ends the execution (the first one stands) and returns the error to give the
    /// code.
    fn interrupt(&self, interrupt: Interrupt) -> WorkflowError {
        let mut state = self.lock();
        let interrupt = state.interrupt.get_or_insert(interrupt).clone();
        interrupt.error(state.blocked.as_deref())
    }

    pub(crate) fn internal(&self, e: impl std::fmt::Display) -> WorkflowError {
        self.interrupt(Interrupt::Internal(format!("could not record the run's progress: {e}")))
    }

    /// What ended the execution early, if anything did.
    pub(crate) fn take_interrupt(&self) -> Option<Interrupt> {
        self.lock().interrupt.take()
    }

    /// The position of the next call. Errors when the execution is already interrupted, when
    /// the code diverged from the record (the run is parked), and when the run is being wound
    /// down and the call would do something new.
    pub(crate) async fn position(&self, name: &str, kind: StepKind) -> Result<(String, Landed), WorkflowError> {
        let (full, position) = {
            let mut state = self.lock();
            if let Some(i) = &state.interrupt {
                return Err(i.error(state.blocked.as_deref()));
            }
            if self.inner.crash_after.is_some_and(|n| state.written >= n) {
                let interrupt = Interrupt::Internal(format!("a simulated crash after {} new steps", state.written));
                let error = interrupt.error(None);
                state.interrupt = Some(interrupt);
                return Err(error);
            }
            if state.stop.is_none() && self.inner.deadline.is_some_and(|d| Utc::now() >= d) {
                state.stop = Some(Stop::Timeout);
            }
            let (full, position) = state.replay.next(name, kind);
            if let Some(stop) = state.stop {
                let winding_down = match &position {
                    Position::Recorded(r) => !matches!(r.status, StepStatus::Completed | StepStatus::Failed),
                    _ => true,
                };
                if winding_down {
                    let interrupt = Interrupt::Stop(stop);
                    let error = interrupt.error(None);
                    state.interrupt = Some(interrupt);
                    return Err(error);
                }
            }
            (full, position)
        };
        match position {
            Position::Recorded(r) => Ok((full, Recorded(r))),
            Position::New(seq) => Ok((full, New(seq))),
            Position::Diverged { seq, reason } => Err(self.park(seq, reason).await),
        }
    }

    /// Parks the run as blocked at position `seq`, in one transaction with the attempt's end.
    async fn park(&self, seq: i32, reason: String) -> WorkflowError {
        let run = self.run_id();
        tracing::warn!(run = %run, %reason, "workflow run blocked: its code no longer matches its recorded steps");
        let written: Result<bool, sqlx::Error> = async {
            let mut tx = self.db().begin().await?;
            let held = sqlx::query(sql::LOCK_ATTEMPT).bind(run.0).bind(self.attempt()).fetch_optional(&mut *tx).await?;
            if held.is_none() {
                return Ok(false);
            }
            sqlx::query(sql::BLOCK).bind(run.0).bind(&reason).bind(seq).execute(&mut *tx).await?;
            self.finish_suspended(&mut tx, parked_until()).await?;
            tx.commit().await?;
            Ok(true)
        }
        .await;
        match written {
            Ok(true) => {
                self.lock().blocked = Some(reason);
                self.interrupt(Interrupt::Written)
            }
            Ok(false) => self.interrupt(Interrupt::Internal("the run's lease was lost".to_owned())),
            Err(e) => self.internal(e),
        }
    }

    /// Writes the attempt's end as a suspension (`scheduled` at `until`, the attempt not
    /// counted), fenced like every finish.
    async fn finish_suspended(&self, conn: &mut sqlx::PgConnection, until: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let outcome = Outcome {
            id: self.run_id(),
            attempt: self.attempt(),
            state: JobState::Scheduled,
            output: None,
            error: None,
            run_at: Some(until),
            uncount: true,
        };
        completer::finish(conn, std::slice::from_ref(&outcome)).await?;
        Ok(())
    }

    /// Writes a checkpoint with the pool.
    async fn record(&self, record: Record<'_>) -> Result<Written, WorkflowError> {
        let mut conn = self.db().acquire().await.map_err(|e| self.internal(e))?;
        self.record_on(&mut conn, record).await
    }

    /// Writes a checkpoint on `conn` (a step's own transaction, for a tx_step).
    pub(crate) async fn record_on(
        &self,
        conn: &mut sqlx::PgConnection,
        r: Record<'_>,
    ) -> Result<Written, WorkflowError> {
        let run = self.run_id().0;
        let row: Result<(bool, Option<bool>), sqlx::Error> = sqlx::query_as(sql::RECORD)
            .bind(run)
            .bind(r.name)
            .bind(r.seq)
            .bind(r.kind.as_str())
            .bind(r.status.as_str())
            .bind(&r.output)
            .bind(&r.error)
            .bind(r.attempts)
            .bind(r.wake_at)
            .bind(r.started_at)
            .fetch_one(&mut *conn)
            .await;
        let (written, cancelling) = row.map_err(|e| self.internal(e))?;
        if cancelling == Some(true) {
            let mut state = self.lock();
            state.stop.get_or_insert(Stop::Cancel);
        }
        if written {
            if matches!(r.status, StepStatus::Completed | StepStatus::Failed) {
                self.lock().written += 1;
            }
            return Ok(Written::Ours);
        }
        let theirs: Option<(String, Option<serde_json::Value>, Option<String>)> = sqlx::query_as(sql::RECORDED)
            .bind(run)
            .bind(r.seq)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| self.internal(e))?;
        match theirs {
            Some((status, output, error)) => {
                Ok(Written::Theirs { status: status.parse().unwrap_or(StepStatus::Failed), output, error })
            }
            None => Err(self.internal("a step's checkpoint vanished")),
        }
    }

    fn register_compensation(
        &self,
        step: &str,
        seq: i32,
        output: serde_json::Value,
        undo: Box<dyn FnOnce(serde_json::Value) -> StepFuture<'static, Result<(), JobError>> + Send>,
    ) {
        self.lock().compensations.push(Compensation { step: step.to_owned(), seq, output, undo });
    }

    /// Runs the registered compensations, newest first, each recorded once done. The first
    /// failure stops and is returned: the execution is retried and the rest run then.
    pub(crate) async fn compensate(&self) -> Result<usize, JobError> {
        let compensations = std::mem::take(&mut self.lock().compensations);
        let mut done = 0;
        for c in compensations.into_iter().rev() {
            let result = std::panic::AssertUnwindSafe((c.undo)(c.output));
            let result = futures_util::FutureExt::catch_unwind(result)
                .await
                .unwrap_or_else(|_| Err(JobError::retry("the compensation panicked")));
            let error = result.as_ref().err().map(JobError::message);
            sqlx::query(sql::COMPENSATED)
                .bind(self.run_id().0)
                .bind(c.seq)
                .bind(&error)
                .execute(self.db())
                .await
                .map_err(|e| JobError::retry(format!("could not record the compensation of {}: {e}", c.step)))?;
            if let Some(error) = error {
                return Err(JobError::retry(format!("the compensation of step {} failed: {error}", c.step)));
            }
            done += 1;
        }
        Ok(done)
    }

    /// The stop the run is under, if any.
    pub(crate) fn stop(&self) -> Option<Stop> {
        self.lock().stop
    }

    /// What a step's failure does next: suspend for a retry, retry in place, or fail the step.
    async fn failed(&self, f: Failure<'_>) -> Result<FailedNext, WorkflowError> {
        let Failure { name, seq, kind, error, attempts, policy, started_at } = f;
        let message = error.message();
        let record = |status, wake_at| Record {
            name,
            seq,
            kind,
            status,
            output: None,
            error: Some(clean(message.clone())),
            attempts,
            wake_at,
            started_at,
        };
        let final_failure = matches!(error, JobError::Fatal(_) | JobError::Cancel(_))
            || (!matches!(error, JobError::Snooze(_)) && attempts >= i32::try_from(policy.max_attempts).unwrap_or(1));
        if final_failure {
            return match self.record(record(StepStatus::Failed, None)).await? {
                Written::Theirs { status: StepStatus::Completed, output, .. } => Ok(FailedNext::Recorded(output)),
                Written::Theirs { error, .. } => {
                    Err(WorkflowError::Step { step: name.to_owned(), message: error.unwrap_or(message) })
                }
                Written::Ours => Err(WorkflowError::Step { step: name.to_owned(), message }),
            };
        }
        let delay = match error {
            JobError::Snooze(d) | JobError::RetryIn(_, d) => d,
            _ => policy.backoff.delay(u32::try_from(attempts).unwrap_or(1), random_unit()),
        };
        let attempts_after = if matches!(error, JobError::Snooze(_)) { attempts - 1 } else { attempts };
        let wake = later(delay);
        let written =
            self.record(Record { attempts: attempts_after, ..record(StepStatus::Retrying, Some(wake)) }).await?;
        if let Written::Theirs { status: StepStatus::Completed, output, .. } = written {
            return Ok(FailedNext::Recorded(output));
        }
        if delay <= IN_PLACE_RETRY {
            tokio::time::sleep(delay).await;
            return Ok(FailedNext::Again(attempts_after));
        }
        self.suspend(wake, None).await?;
        Err(self.interrupt(Interrupt::Internal("a retry suspended without an end".to_owned())))
    }
}

/// Where a call landed, for the callers: recorded (to replay or continue) or new.
pub(crate) enum Landed {
    Recorded(RecordedStep),
    New(i32),
}
use Landed::{New, Recorded};

/// A failed attempt of a step.
struct Failure<'a> {
    name: &'a str,
    seq: i32,
    kind: StepKind,
    error: JobError,
    attempts: i32,
    policy: RetryPolicy,
    started_at: DateTime<Utc>,
}

/// What follows a step's failed attempt.
enum FailedNext {
    /// Run it again now; this many attempts are counted so far.
    Again(i32),
    /// Another execution completed the step meanwhile: its output.
    Recorded(Option<serde_json::Value>),
}

impl<'a> Record<'a> {
    pub(crate) fn waiting(name: &'a str, seq: i32, kind: StepKind, wake_at: DateTime<Utc>) -> Self {
        Self {
            name,
            seq,
            kind,
            status: StepStatus::Waiting,
            output: None,
            error: None,
            attempts: 0,
            wake_at: Some(wake_at),
            started_at: Utc::now(),
        }
    }
}

fn clean(mut message: String) -> String {
    forge_core::text::clean_text(&mut message, forge_core::text::caps::ERROR_MESSAGE);
    message
}

/// A number in 0.0..1.0 for backoff jitter.
fn random_unit() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64;
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A step's output as JSON, refused (a permanent step failure) when Postgres could not store
/// it as it is: a NUL in a string, or more than [`forge_core::text::caps::OUTPUT`] bytes.
fn storable<T: Serialize>(value: &T) -> Result<serde_json::Value, JobError> {
    let json = serde_json::to_value(value).map_err(|e| JobError::permanent(format!("cannot store the output: {e}")))?;
    if let Some(path) = forge_core::text::find_nul(&json) {
        return Err(JobError::permanent(format!(
            "the output holds a NUL character at {path}, which Postgres cannot store"
        )));
    }
    let size = json.to_string().len();
    if size > forge_core::text::caps::OUTPUT {
        return Err(JobError::permanent(format!(
            "the output is {size} bytes; a step's output is at most {} bytes",
            forge_core::text::caps::OUTPUT
        )));
    }
    Ok(json)
}

fn decode<T: DeserializeOwned>(step: &str, output: Option<serde_json::Value>) -> Result<T, WorkflowError> {
    serde_json::from_value(output.unwrap_or(serde_json::Value::Null)).map_err(|e| {
        WorkflowError::Failed(format!("the recorded output of step {step} does not fit its type any more: {e}"))
    })
}

fn decode_event<T: DeserializeOwned>(
    name: &str,
    output: Option<serde_json::Value>,
) -> Result<Option<T>, WorkflowError> {
    match output.as_ref().and_then(|o| o.get("payload")) {
        Some(payload) => serde_json::from_value(payload.clone()).map(Some).map_err(|e| {
            WorkflowError::Failed(format!("the payload of event {name} does not fit the type waited for: {e}"))
        }),
        None => Ok(None),
    }
}

/// Where a step (or tx_step) starts.
enum Begin<T> {
    /// Recorded as completed: its output, decoded (its compensation registered).
    Replayed(T),
    /// To run: its name with occurrence, its position, the attempts counted so far.
    Run { name: String, seq: i32, attempts: i32 },
}

/// Takes the step's position and replays it if it is recorded as finished.
async fn begin<T: DeserializeOwned + Send + 'static>(
    ctx: &WorkflowContext,
    name: &str,
    kind: StepKind,
    undo: &mut Option<Undo<T>>,
) -> Result<Begin<T>, WorkflowError> {
    let (name, landed) = ctx.position(name, kind).await?;
    match landed {
        Recorded(r) => match r.status {
            StepStatus::Completed => {
                let replayed = Replayed { name: &name, seq: r.seq, output: r.output, compensated: r.compensated };
                replay_output(ctx, undo.take(), replayed).map(Begin::Replayed)
            }
            StepStatus::Failed => Err(WorkflowError::Step { step: name, message: r.error.unwrap_or_default() }),
            StepStatus::Retrying | StepStatus::Waiting => Ok(Begin::Run { name, seq: r.seq, attempts: r.attempts }),
        },
        New(seq) => Ok(Begin::Run { name, seq, attempts: 0 }),
    }
}

/// A recorded step's output as its caller gets it again.
struct Replayed<'a> {
    name: &'a str,
    seq: i32,
    output: Option<serde_json::Value>,
    compensated: bool,
}

/// Decodes a recorded output and registers the step's compensation unless it already ran.
fn replay_output<T: DeserializeOwned + Send + 'static>(
    ctx: &WorkflowContext,
    undo: Option<Undo<T>>,
    r: Replayed<'_>,
) -> Result<T, WorkflowError> {
    let json = r.output.unwrap_or(serde_json::Value::Null);
    let value = decode(r.name, Some(json.clone()))?;
    if let Some(undo) = undo
        && !r.compensated
    {
        ctx.register_compensation(r.name, r.seq, json, erase(undo));
    }
    Ok(value)
}

type Undo<T> = Box<dyn FnOnce(T) -> StepFuture<'static, Result<(), JobError>> + Send>;

/// Erases a typed compensation into one over the step's recorded JSON.
fn erase<T: DeserializeOwned + Send + 'static>(
    undo: Undo<T>,
) -> Box<dyn FnOnce(serde_json::Value) -> StepFuture<'static, Result<(), JobError>> + Send> {
    Box::new(move |json| match serde_json::from_value::<T>(json) {
        Ok(value) => undo(value),
        Err(e) => Box::pin(async move { Err(JobError::permanent(format!("the step's output does not fit: {e}"))) }),
    })
}

/// A step being declared: `.retry`, `.timeout`, `.compensate`, then `.await`. See
/// [`WorkflowContext::step`].
#[must_use = "a step does nothing until it is awaited"]
pub struct Step<'a, T, F> {
    ctx: &'a WorkflowContext,
    name: String,
    f: F,
    policy: RetryPolicy,
    timeout: Option<Duration>,
    compensate: Option<Undo<T>>,
}

impl<T, F> std::fmt::Debug for Step<'_, T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step").field("name", &self.name).field("policy", &self.policy).finish()
    }
}

impl<'a, T, F, Fut> Step<'a, T, F>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    F: FnMut() -> Fut + Send + 'a,
    Fut: Future<Output = Result<T, JobError>> + Send + 'a,
{
    /// How often the step is tried (default [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The longest one attempt may take; a slower attempt fails (and is retried).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// What undoes the step, given its output, if the run later fails for good or is
    /// cancelled. Compensations run newest first, each once.
    pub fn compensate<C, CFut>(mut self, undo: C) -> Self
    where
        C: FnOnce(T) -> CFut + Send + 'static,
        CFut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        self.compensate = Some(Box::new(move |value| Box::pin(undo(value))));
        self
    }

    async fn run(mut self) -> Result<T, WorkflowError> {
        let ctx = self.ctx;
        let (name, seq, mut attempts) = match begin(ctx, &self.name, StepKind::Step, &mut self.compensate).await? {
            Begin::Replayed(value) => return Ok(value),
            Begin::Run { name, seq, attempts } => (name, seq, attempts),
        };
        let started_at = Utc::now();
        loop {
            attempts += 1;
            let attempt = (self.f)();
            let result = match self.timeout {
                Some(limit) => tokio::time::timeout(limit, attempt)
                    .await
                    .unwrap_or_else(|_| Err(JobError::retry(format!("the step timed out after {limit:?}")))),
                None => attempt.await,
            };
            let error = match result.and_then(|value| storable(&value).map(|json| (value, json))) {
                Ok((value, json)) => {
                    let record = Record {
                        name: &name,
                        seq,
                        kind: StepKind::Step,
                        status: StepStatus::Completed,
                        output: Some(json.clone()),
                        error: None,
                        attempts,
                        wake_at: None,
                        started_at,
                    };
                    return match ctx.record(record).await? {
                        Written::Ours => {
                            if let Some(undo) = self.compensate.take() {
                                ctx.register_compensation(&name, seq, json, erase(undo));
                            }
                            Ok(value)
                        }
                        Written::Theirs { status: StepStatus::Completed, output, .. } => {
                            self.replayed(&name, seq, output, false)
                        }
                        Written::Theirs { error, .. } => {
                            Err(WorkflowError::Step { step: name, message: error.unwrap_or_default() })
                        }
                    };
                }
                Err(e) => e,
            };
            let failure =
                Failure { name: &name, seq, kind: StepKind::Step, error, attempts, policy: self.policy, started_at };
            match ctx.failed(failure).await? {
                FailedNext::Again(counted) => attempts = counted,
                FailedNext::Recorded(output) => return self.replayed(&name, seq, output, false),
            }
        }
    }

    /// A recorded output, decoded; its compensation registered unless it already ran.
    fn replayed(
        mut self,
        name: &str,
        seq: i32,
        output: Option<serde_json::Value>,
        compensated: bool,
    ) -> Result<T, WorkflowError> {
        replay_output(self.ctx, self.compensate.take(), Replayed { name, seq, output, compensated })
    }
}

impl<'a, T, F, Fut> IntoFuture for Step<'a, T, F>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    F: FnMut() -> Fut + Send + 'a,
    Fut: Future<Output = Result<T, JobError>> + Send + 'a,
{
    type Output = Result<T, WorkflowError>;
    type IntoFuture = StepFuture<'a, Result<T, WorkflowError>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// A transactional step being declared: `.retry`, `.compensate`, then `.await`. See
/// [`WorkflowContext::tx_step`].
#[must_use = "a step does nothing until it is awaited"]
pub struct TxStep<'a, T, F> {
    ctx: &'a WorkflowContext,
    name: String,
    f: F,
    policy: RetryPolicy,
    compensate: Option<Undo<T>>,
}

impl<T, F> std::fmt::Debug for TxStep<'_, T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxStep").field("name", &self.name).field("policy", &self.policy).finish()
    }
}

impl<'a, T, F, Fut> TxStep<'a, T, F>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    F: FnMut(Tx) -> Fut + Send + 'a,
    Fut: Future<Output = Result<T, JobError>> + Send + 'a,
{
    /// How often the step is tried (default [`RetryPolicy::default`]); each attempt has a
    /// fresh transaction.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// What undoes the step if the run later fails for good or is cancelled (see
    /// [`Step::compensate`]).
    pub fn compensate<C, CFut>(mut self, undo: C) -> Self
    where
        C: FnOnce(T) -> CFut + Send + 'static,
        CFut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        self.compensate = Some(Box::new(move |value| Box::pin(undo(value))));
        self
    }

    async fn run(mut self) -> Result<T, WorkflowError> {
        let ctx = self.ctx;
        let (name, seq, mut attempts) = match begin(ctx, &self.name, StepKind::TxStep, &mut self.compensate).await? {
            Begin::Replayed(value) => return Ok(value),
            Begin::Run { name, seq, attempts } => (name, seq, attempts),
        };
        let started_at = Utc::now();
        loop {
            attempts += 1;
            let tx = ctx.db().begin().await.map_err(|e| ctx.internal(e))?;
            let slot: Arc<tokio::sync::Mutex<TxSlot>> = Arc::new(tokio::sync::Mutex::new(Some(tx)));
            let handle = Tx::lock(slot.clone()).await.ok_or_else(|| ctx.internal("the step's transaction is gone"))?;
            let result = (self.f)(handle).await.and_then(|value| storable(&value).map(|json| (value, json)));
            let tx = slot.lock().await.take();
            let error = match (result, tx) {
                (Ok((value, json)), Some(mut tx)) => {
                    let record = Record {
                        name: &name,
                        seq,
                        kind: StepKind::TxStep,
                        status: StepStatus::Completed,
                        output: Some(json.clone()),
                        error: None,
                        attempts,
                        wake_at: None,
                        started_at,
                    };
                    match ctx.record_on(&mut tx, record).await? {
                        Written::Ours => {
                            tx.commit().await.map_err(|e| ctx.internal(e))?;
                            if let Some(undo) = self.compensate.take() {
                                ctx.register_compensation(&name, seq, json, erase(undo));
                            }
                            return Ok(value);
                        }
                        // Another execution committed the step first: ours rolls back.
                        Written::Theirs { status: StepStatus::Completed, output, .. } => {
                            drop(tx);
                            return self.replayed(&name, seq, output, false);
                        }
                        Written::Theirs { error, .. } => {
                            return Err(WorkflowError::Step { step: name, message: error.unwrap_or_default() });
                        }
                    }
                }
                (Ok(_), None) => JobError::retry("the step's transaction was finished by its closure"),
                // Dropping the transaction rolls the attempt's effects back.
                (Err(e), _) => e,
            };
            let failure =
                Failure { name: &name, seq, kind: StepKind::TxStep, error, attempts, policy: self.policy, started_at };
            match ctx.failed(failure).await? {
                FailedNext::Again(counted) => attempts = counted,
                FailedNext::Recorded(output) => return self.replayed(&name, seq, output, false),
            }
        }
    }

    /// A recorded output, decoded; its compensation registered unless it already ran.
    fn replayed(
        mut self,
        name: &str,
        seq: i32,
        output: Option<serde_json::Value>,
        compensated: bool,
    ) -> Result<T, WorkflowError> {
        replay_output(self.ctx, self.compensate.take(), Replayed { name, seq, output, compensated })
    }
}

impl<'a, T, F, Fut> IntoFuture for TxStep<'a, T, F>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    F: FnMut(Tx) -> Fut + Send + 'a,
    Fut: Future<Output = Result<T, JobError>> + Send + 'a,
{
    type Output = Result<T, WorkflowError>;
    type IntoFuture = StepFuture<'a, Result<T, WorkflowError>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
