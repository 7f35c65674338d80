//! `forge::testing`'s workflow helpers: [`TestDatabase::start_workflow`] gives a [`TestRun`] that
//! executes a run in this process (the worker's own executor, no node), with a clock that can
//! be moved forward ([`TestRun::advance`]), events injected, crashes simulated, and the recorded
//! steps at hand; [`MockHttp`] stands in for the services a step calls.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::TestDatabase;
use crate::jobs::completer;
use crate::jobs::worker::outcome;
use crate::jobs::worker::{Attempt, ClaimedJob};
use crate::jobs::{Job, JobId};
use crate::workflows::{
    self, EventSent, OVERRIDES, Overrides, RunInfo, RunStatus, StartOptions, StepInfo, Workflow, WorkflowsError,
};

/// Where a run stands after [`TestRun::run`].
#[derive(Clone, Debug, PartialEq)]
pub enum RunOutcome<O> {
    /// It finished with this output.
    Completed(O),
    /// It failed for good (its compensations ran): its last error.
    Failed(String),
    /// It was cancelled (its compensations ran).
    Cancelled,
    /// It waits: for an event (named), or until a time (a sleep, a step's retry).
    Waiting {
        /// The event it waits for, if it waits for one.
        event: Option<String>,
        /// When it wakes by itself (an event wait's timeout).
        until: DateTime<Utc>,
    },
    /// Its code diverged from its record: why.
    Blocked(String),
}

/// One workflow run executed in this process: see [`TestDatabase::start_workflow`].
#[derive(Debug)]
pub struct TestRun<'a, W> {
    db: &'a TestDatabase,
    id: JobId,
    http: Option<reqwest::Client>,
    workflow: PhantomData<fn() -> W>,
}

impl TestDatabase {
    /// Starts a run of `W` (its job and row, as `W::start` would) without executing it; the
    /// returned [`TestRun`] executes it in this process.
    ///
    /// ```ignore
    /// let mut run = db.start_workflow::<SignUp>(args).await;
    /// assert!(matches!(run.run().await, RunOutcome::Waiting { .. }));
    /// run.send_event("email_confirmed", json!({})).await?;
    /// run.advance(Duration::from_secs(3 * 86_400)).await;
    /// assert_eq!(run.run().await, RunOutcome::Completed(()));
    /// ```
    pub async fn start_workflow<W: Workflow>(&self, args: <W as Job>::Args) -> TestRun<'_, W> {
        self.start_workflow_with::<W>(args, StartOptions::new()).await
    }

    /// A [`TestRun`] for a run started elsewhere (by a mutation under test, say).
    pub fn workflow_run<W: Workflow>(&self, run: JobId) -> TestRun<'_, W> {
        TestRun { db: self, id: run, http: None, workflow: PhantomData }
    }

    /// [`TestDatabase::start_workflow`] with options (a run key...).
    pub async fn start_workflow_with<W: Workflow>(
        &self,
        args: <W as Job>::Args,
        options: StartOptions,
    ) -> TestRun<'_, W> {
        let id = W::start_with(self.pool(), args, options)
            .await
            .unwrap_or_else(|e| panic!("cannot start a run of {}: {e}", <W as Job>::NAME));
        TestRun { db: self, id, http: None, workflow: PhantomData }
    }
}

impl<W: Workflow> TestRun<'_, W> {
    /// The run's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// Steps get this client from `ctx.http()` (a [`MockHttp`]'s).
    pub fn with_http(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Executes the run until it finishes or waits, as workers would: each execution through
    /// the worker's executor and outcome policy; an execution that failed (a crash, a database
    /// error) is retried at once, without its backoff.
    pub async fn run(&mut self) -> RunOutcome<<W as Job>::Output>
    where
        <W as Job>::Output: serde::de::DeserializeOwned,
    {
        while self.execute_once(None).await {}
        self.outcome().await
    }

    /// Executes the run once, ending the execution as a crash would right after `steps` new
    /// steps are recorded (the execution is then retried by the next [`TestRun::run`], its
    /// attempt counted). Returns whether an execution ran.
    pub async fn crash_after(&mut self, steps: usize) -> bool {
        self.execute_once(Some(steps)).await
    }

    /// Moves the run's clock forward by `by`: its sleeps, event timeouts, step retries and
    /// whole-run deadline come `by` sooner, so a 3-day sleep passes at once. (The wall clock is
    /// not moved: `ctx.workflow_time()` records the real time.)
    pub async fn advance(&self, by: Duration) {
        let secs = by.as_secs_f64();
        let statements = [
            "update forge_jobs set run_at = run_at - make_interval(secs => $2)
             where id = $1 and state in ('scheduled', 'retryable') and run_at < '9999-01-01'",
            "update forge_workflow_steps set wake_at = wake_at - make_interval(secs => $2)
             where run_id = $1 and status in ('waiting', 'retrying')",
            "update forge_workflow_runs set deadline = deadline - make_interval(secs => $2) where id = $1",
        ];
        for sql in statements {
            sqlx::query(sql)
                .bind(self.id.0)
                .bind(secs)
                .execute(self.db.pool())
                .await
                .unwrap_or_else(|e| panic!("cannot advance run {}: {e}", self.id));
        }
    }

    /// Sends an event to the run, as `forge::workflows::send_event` does.
    pub async fn send_event(&self, name: &str, payload: impl Serialize) -> Result<EventSent, WorkflowsError> {
        workflows::send_event(self.db.pool(), self.id, name, payload).await
    }

    /// The steps the run recorded, in order.
    pub async fn steps(&self) -> Vec<StepInfo> {
        workflows::run_steps(self.db.pool(), self.id).await.unwrap_or_else(|e| panic!("cannot read the steps: {e}"))
    }

    /// The names of the recorded steps, in order (`["reserve", "charge", "charge#2"]`).
    pub async fn step_names(&self) -> Vec<String> {
        self.steps().await.into_iter().map(|s| s.name).collect()
    }

    /// The run as listings show it.
    pub async fn info(&self) -> RunInfo {
        workflows::find_run(self.db.pool(), self.id)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no workflow run {}", self.id))
    }

    /// Claims the run's job if it is due (or failed and waiting for its backoff) and runs one
    /// execution; false when it is not due.
    async fn execute_once(&mut self, crash_after: Option<usize>) -> bool {
        let claimed: Option<ClaimedJob> = sqlx::query_as(
            "update forge_jobs set state = 'running', attempt = attempt + 1, attempted_at = now(),
                                   heartbeat_at = now(), attempted_by = 'forge-testing'
             where id = $1 and (state = 'retryable' or (state in ('available', 'scheduled') and run_at <= now()))
             returning id, priority, kind, args, attempt, max_attempts, queue, run_at, metadata",
        )
        .bind(self.id.0)
        .fetch_optional(self.db.pool())
        .await
        .unwrap_or_else(|e| panic!("cannot claim run {}: {e}", self.id));
        let Some(job) = claimed else { return false };
        let options = W::options();
        let started_at = Utc::now();
        let attempt = Attempt {
            pool: self.db.pool(),
            node_id: "forge-testing",
            dispatcher: None,
            job: &job,
            options: &options,
            lease: Duration::from_secs(30),
            token: Default::default(),
            tx_slots: None,
            extensions: Default::default(),
            hold: None,
        };
        let args: <W as Job>::Args = serde_json::from_value(job.args.clone())
            .unwrap_or_else(|e| panic!("the run's arguments do not fit {}: {e}", <W as Job>::NAME));
        let overrides = Overrides { crash_after, http: self.http.clone() };
        let ended = OVERRIDES.scope(overrides, attempt.run(|ctx| async move { W::run(&ctx, args).await })).await;
        let (ended, _) = ended.split();
        if let Some(outcome) = outcome::decide(&job, ended, options.backoff, started_at, "forge-testing") {
            completer::finish(self.db.pool(), std::slice::from_ref(&outcome))
                .await
                .unwrap_or_else(|e| panic!("cannot record the execution's end: {e}"));
        }
        true
    }

    async fn outcome(&self) -> RunOutcome<<W as Job>::Output>
    where
        <W as Job>::Output: serde::de::DeserializeOwned,
    {
        let info = self.info().await;
        match info.status() {
            RunStatus::Completed => {
                let output = info.output.unwrap_or(serde_json::Value::Null);
                RunOutcome::Completed(
                    serde_json::from_value(output).unwrap_or_else(|e| panic!("the run's output does not fit: {e}")),
                )
            }
            RunStatus::Cancelled => RunOutcome::Cancelled,
            RunStatus::Failed => RunOutcome::Failed(
                info.errors
                    .as_array()
                    .and_then(|e| e.last())
                    .and_then(|e| e["message"].as_str())
                    .unwrap_or("")
                    .to_owned(),
            ),
            RunStatus::Blocked => RunOutcome::Blocked(info.blocked_reason.unwrap_or_default()),
            _ => RunOutcome::Waiting { event: info.waiting_for, until: info.run_at },
        }
    }
}

/// One request [`MockHttp`] received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockCall {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The host the request was for.
    pub host: String,
    /// The path.
    pub path: String,
    /// The body, as text.
    pub body: String,
}

#[derive(Debug)]
struct Rule {
    method: String,
    pattern: String,
    status: u16,
    body: serde_json::Value,
    /// Answers given once each, before `status`/`body` (a service failing then recovering).
    once: VecDeque<(u16, serde_json::Value)>,
}

#[derive(Debug, Default)]
struct Recorded {
    rules: Vec<Rule>,
    calls: Vec<MockCall>,
}

/// A recording HTTP mock for the services steps (and actions) call: a real HTTP server on
/// loopback, and a client ([`MockHttp::client`]) that sends every plain-HTTP request to it,
/// whatever host it names. Requests are matched by method and path pattern (`*` one segment,
/// `**` the rest, `{name}` one segment) against canned answers; an unmatched request gets 501
/// and is recorded like the others.
///
/// ```no_run
/// # async fn demo() {
/// use forge_runtime::testing::MockHttp;
///
/// let http = MockHttp::start().await;
/// http.on("POST", "/v1/charges").respond(200, serde_json::json!({"id": "ch_1"}));
/// let reply = http.client().post("http://payments.example/v1/charges").send().await.unwrap();
/// assert_eq!(reply.status(), 200);
/// http.assert_called_times("POST", "/v1/charges", 1);
/// http.assert_not_called("DELETE", "/v1/charges/{id}");
/// # }
/// ```
/// HTTPS requests are not intercepted: give the code under test the mock's [`MockHttp::url`]
/// as its service's base URL instead.
#[derive(Clone, Debug)]
pub struct MockHttp {
    url: String,
    state: Arc<Mutex<Recorded>>,
    _server: Arc<tokio::task::JoinHandle<()>>,
}

/// A rule being declared: [`MockRule::respond`] completes it.
#[derive(Debug)]
#[must_use = "a rule does nothing until `respond` is called"]
pub struct MockRule<'a> {
    mock: &'a MockHttp,
    method: String,
    pattern: String,
    once: VecDeque<(u16, serde_json::Value)>,
}

impl MockRule<'_> {
    /// Answers the next matching request once with `status` and `body`, before the rule's
    /// lasting answer.
    pub fn respond_once(mut self, status: u16, body: serde_json::Value) -> Self {
        self.once.push_back((status, body));
        self
    }

    /// Answers matching requests with `status` and the JSON `body` (after any
    /// [`MockRule::respond_once`] answers).
    pub fn respond(self, status: u16, body: serde_json::Value) {
        let mut state = self.mock.lock();
        state.rules.push(Rule { method: self.method, pattern: self.pattern, status, body, once: self.once });
    }
}

impl MockHttp {
    /// Starts the mock server on a loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the mock server");
        let url = format!("http://{}", listener.local_addr().expect("mock address"));
        let state = Arc::new(Mutex::new(Recorded::default()));
        let app = axum::Router::new().fallback(answer).with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, state, _server: Arc::new(server) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The server's base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client whose plain-HTTP requests all go to the mock.
    pub fn client(&self) -> reqwest::Client {
        let proxy = reqwest::Proxy::http(&self.url).expect("the mock's URL is a valid proxy");
        reqwest::Client::builder().proxy(proxy).build().expect("a client")
    }

    /// Declares answers for `method` requests whose path matches `pattern`.
    pub fn on(&self, method: &str, pattern: &str) -> MockRule<'_> {
        MockRule { mock: self, method: method.to_ascii_uppercase(), pattern: pattern.to_owned(), once: VecDeque::new() }
    }

    /// Every request received, in order.
    pub fn calls(&self) -> Vec<MockCall> {
        self.lock().calls.clone()
    }

    /// The requests that match `method` and `pattern`.
    pub fn calls_to(&self, method: &str, pattern: &str) -> Vec<MockCall> {
        let method = method.to_ascii_uppercase();
        self.calls().into_iter().filter(|c| c.method == method && path_matches(pattern, &c.path)).collect()
    }

    /// Panics unless a matching request was received.
    pub fn assert_called(&self, method: &str, pattern: &str) {
        assert!(
            !self.calls_to(method, pattern).is_empty(),
            "no {method} {pattern} was received; got {:?}",
            self.calls()
        );
    }

    /// Panics unless exactly `times` matching requests were received.
    pub fn assert_called_times(&self, method: &str, pattern: &str, times: usize) {
        let got = self.calls_to(method, pattern).len();
        assert_eq!(got, times, "{method} {pattern} was received {got} times, not {times}; got {:?}", self.calls());
    }

    /// Panics if a matching request was received.
    pub fn assert_not_called(&self, method: &str, pattern: &str) {
        let got = self.calls_to(method, pattern);
        assert!(got.is_empty(), "{method} {pattern} was received: {got:?}");
    }
}

async fn answer(
    State(state): State<Arc<Mutex<Recorded>>>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let host = uri
        .host()
        .map(str::to_owned)
        .or_else(|| headers.get("host").and_then(|h| h.to_str().ok()).map(str::to_owned))
        .unwrap_or_default();
    let call = MockCall {
        method: method.as_str().to_owned(),
        host,
        path: uri.path().to_owned(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let mut state = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let answer = state
        .rules
        .iter_mut()
        .rev()
        .find(|r| r.method == call.method && path_matches(&r.pattern, &call.path))
        .map(|r| r.once.pop_front().unwrap_or_else(|| (r.status, r.body.clone())));
    let unmatched = format!("MockHttp: no rule for {} {}", call.method, call.path);
    state.calls.push(call);
    match answer {
        Some((status, body)) => {
            (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), axum::Json(body)).into_response()
        }
        None => (StatusCode::NOT_IMPLEMENTED, unmatched).into_response(),
    }
}

/// Whether `path` matches `pattern`: `*` and `{name}` match one segment, `**` the rest.
fn path_matches(pattern: &str, path: &str) -> bool {
    let mut want = pattern.trim_matches('/').split('/');
    let mut got = path.trim_matches('/').split('/');
    loop {
        match (want.next(), got.next()) {
            (Some("**"), _) => return true,
            (None, None) => return true,
            (Some(w), Some(g)) if w == "*" || (w.starts_with('{') && w.ends_with('}')) || w == g => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::path_matches;

    #[test]
    fn patterns_match_segments() {
        assert!(path_matches("/v1/charges", "/v1/charges"));
        assert!(path_matches("/v1/charges/{id}", "/v1/charges/ch_1"));
        assert!(path_matches("/v1/*/refund", "/v1/ch_1/refund"));
        assert!(path_matches("/v1/**", "/v1/a/b/c"));
        assert!(!path_matches("/v1/charges", "/v1/charges/ch_1"));
        assert!(!path_matches("/v1/charges/{id}", "/v1/charges"));
    }
}
