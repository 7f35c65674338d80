//! The hub: a node's live subscriptions, grouped by query, caller and arguments, each group run
//! again (once per burst of changes) when a table it reads changes, its result pushed to every
//! member only when it differs from the last one pushed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::HeaderMap;
use forge_core::ForgeConfig;
use forge_core::config::RealtimeConfig;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::changes::{self, ChangeFeed};
use super::jobs::{self, JobWatches};
use super::outbox::{MemberId, Outbox, Outgoing};
use super::protocol::ServerMessage;
use super::sources::{Caller, LiveSource, LiveSources};
use crate::functions::{Auth, ForgeError, FunctionKind, QueryCache};
use crate::gateway::{AuthError, GatewayState};

/// Re-runs in flight at once on a node (each holds a connection while it runs).
const CONCURRENT_RUNS: usize = 4;
/// A source is read again no sooner than this many times its last read took.
const SOURCE_COST_FACTOR: u32 = 10;
/// How often a node deletes old rows of the change feed.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// A node's live queries: what `GET /ws` and `GET /sse` subscribe through.
#[derive(Clone, Debug)]
pub struct Realtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    gateway: GatewayState,
    config: RealtimeConfig,
    groups: Mutex<HashMap<GroupKey, Group>>,
    /// Which member is in which group.
    members: Mutex<HashMap<MemberId, GroupKey>>,
    watched: tokio::sync::Mutex<Watched>,
    connections: Arc<Semaphore>,
    runs: Semaphore,
    following: AtomicBool,
    next_member: AtomicU64,
    stop: CancellationToken,
    /// Job watches.
    jobs: JobWatches,
    /// The role that may watch any job (`[dashboard] role`).
    operator_role: String,
    /// Built-in sources (the dashboard's), set once before the first subscription.
    sources: std::sync::OnceLock<LiveSources>,
}

/// Tables with the change trigger.
#[derive(Debug, Default)]
struct Watched {
    tables: HashSet<String>,
    /// Whether every application table got it (for queries without `reads`).
    all: bool,
}

/// SHA-256 of (query, caller, arguments): [`QueryCache::key`].
type GroupKey = [u8; 32];

/// The subscriptions to one query with the same caller and arguments: they share each run.
#[derive(Debug)]
struct Group {
    function: String,
    args: serde_json::Value,
    auth: Auth,
    reads: Option<&'static [&'static str]>,
    /// A built-in source instead of a query: run again every `source_poll`.
    source: Option<Arc<dyn LiveSource>>,
    /// When its last run ended.
    ran_at: Option<tokio::time::Instant>,
    /// How long its last run took.
    took: Duration,
    members: HashMap<MemberId, Member>,
    last: Option<Last>,
    running: bool,
    again: bool,
}

#[derive(Debug)]
struct Member {
    outbox: Outbox,
    sub: String,
}

/// The last result pushed to a group, and its hash.
#[derive(Debug)]
struct Last {
    hash: [u8; 32],
    outcome: Outcome,
}

#[derive(Clone, Debug)]
enum Outcome {
    Data(serde_json::Value),
    Error(Box<ServerMessage>),
}

impl Outcome {
    fn message(&self, sub: &str) -> ServerMessage {
        match self {
            Outcome::Data(data) => ServerMessage::Data { id: sub.to_owned(), data: data.clone() },
            Outcome::Error(message) => match message.as_ref() {
                ServerMessage::Error { error, .. } => {
                    ServerMessage::Error { id: Some(sub.to_owned()), error: error.clone() }
                }
                other => other.clone(),
            },
        }
    }
}

impl Realtime {
    /// The live queries of `gateway`'s functions, as `config` says, until `stop`. Inside a
    /// Tokio runtime the node starts following the change feed at once (so that its mutations
    /// wake other nodes' subscribers even before anyone subscribes here); elsewhere at the first
    /// subscription.
    pub fn new(gateway: GatewayState, config: &ForgeConfig, stop: CancellationToken) -> Self {
        let realtime = Self::assemble(gateway, &config.realtime, config.dashboard.role.clone(), stop);
        if tokio::runtime::Handle::try_current().is_ok() {
            realtime.follow();
        }
        realtime
    }

    fn assemble(
        gateway: GatewayState,
        config: &RealtimeConfig,
        operator_role: String,
        stop: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                gateway,
                config: config.clone(),
                groups: Mutex::default(),
                members: Mutex::default(),
                watched: tokio::sync::Mutex::default(),
                connections: Arc::new(Semaphore::new(config.max_connections.get())),
                runs: Semaphore::new(CONCURRENT_RUNS),
                following: AtomicBool::new(false),
                next_member: AtomicU64::new(1),
                stop,
                jobs: JobWatches::default(),
                operator_role,
                sources: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Serves `sources` beside the registered queries (set once: later calls are ignored).
    pub fn with_sources(self, sources: LiveSources) -> Self {
        let _ = self.inner.sources.set(sources);
        self
    }

    pub(super) fn config(&self) -> &RealtimeConfig {
        &self.inner.config
    }

    pub(super) fn stopped(&self) -> &CancellationToken {
        &self.inner.stop
    }

    /// A connection slot, or `None` at `max_connections`.
    pub(super) fn connection_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.inner.connections.clone().try_acquire_owned().ok()
    }

    /// The caller `headers` prove (anonymous without credentials).
    pub(super) async fn authenticate(&self, headers: &HeaderMap) -> Result<Auth, AuthError> {
        self.inner.gateway.authenticator().authenticate(headers).await
    }

    /// The caller `token` (a JWT or an API key) proves.
    pub(super) async fn authenticate_token(&self, token: &str) -> Result<Auth, AuthError> {
        self.authenticate(&bearer(token)?).await
    }

    /// Subscribes `outbox`'s connection to `query` (a registered query or a built-in source)
    /// with `args` as `caller`, under the client's name `sub`. The result arrives in the outbox
    /// (an error ends the subscription if the first run is refused: unknown query, access,
    /// arguments).
    pub(super) async fn subscribe(
        &self,
        outbox: &Outbox,
        sub: &str,
        query: &str,
        args: serde_json::Value,
        caller: Caller<'_>,
    ) -> Result<MemberId, ServerMessage> {
        if let Some(source) = self.inner.sources.get().and_then(|s| s.get(query)) {
            source.authorize(caller).map_err(|e| ServerMessage::error(Some(sub.to_owned()), &e))?;
            self.follow();
            // Every authorised caller sees the same value: one group per arguments.
            let key = QueryCache::key(query, &Auth::anonymous(), &args);
            return Ok(self.join(outbox, sub, key, query, args, Auth::anonymous(), None, Some(source)));
        }
        let auth = caller.auth;
        let functions = self.inner.gateway.functions();
        let info = functions.get(query).ok_or_else(|| {
            ServerMessage::error(Some(sub.to_owned()), &ForgeError::UnknownFunction(query.to_owned()))
        })?;
        if info.kind != FunctionKind::Query {
            return Err(ServerMessage::problem(
                Some(sub.to_owned()),
                axum::http::StatusCode::BAD_REQUEST,
                "not-a-query",
                format!("`{query}` is a {}: only queries can be subscribed to", info.kind.as_str()),
            ));
        }
        let reads = info.reads;
        self.watch(reads).await.map_err(|e| {
            tracing::error!(error = %e, query, "the change trigger could not be installed");
            ServerMessage::error(Some(sub.to_owned()), &ForgeError::Internal(e.to_string()))
        })?;
        self.follow();
        let key = QueryCache::key(query, auth, &args);
        Ok(self.join(outbox, sub, key, query, args, auth.clone(), reads, None))
    }

    /// Adds a member to group `key` (made if missing), pushing the group's last result to it or
    /// starting its first run.
    #[allow(clippy::too_many_arguments)]
    fn join(
        &self,
        outbox: &Outbox,
        sub: &str,
        key: GroupKey,
        query: &str,
        args: serde_json::Value,
        auth: Auth,
        reads: Option<&'static [&'static str]>,
        source: Option<Arc<dyn LiveSource>>,
    ) -> MemberId {
        let member = self.inner.next_member.fetch_add(1, Ordering::Relaxed);
        let run = {
            let mut groups = self.inner.lock_groups();
            let group = groups.entry(key).or_insert_with(|| Group {
                function: query.to_owned(),
                args,
                auth,
                reads,
                source,
                ran_at: None,
                took: Duration::ZERO,
                members: HashMap::new(),
                last: None,
                running: false,
                again: false,
            });
            if let Some(last) = &group.last {
                outbox.push(last.outcome.message(sub));
            }
            group.members.insert(member, Member { outbox: outbox.clone(), sub: sub.to_owned() });
            let start = !group.running && group.last.is_none();
            if start {
                group.running = true;
            }
            start
        };
        lock(&self.inner.members).insert(member, key);
        if run {
            tokio::spawn(run_group(self.inner.clone(), key));
        }
        member
    }

    /// Ends a subscription.
    pub(super) fn unsubscribe(&self, member: MemberId) {
        if self.inner.jobs.remove(member) {
            return;
        }
        let Some(key) = lock(&self.inner.members).remove(&member) else {
            return;
        };
        let mut groups = self.inner.lock_groups();
        if let Some(group) = groups.get_mut(&key) {
            group.members.remove(&member);
            if group.members.is_empty() {
                groups.remove(&key);
            }
        }
    }

    /// A subscription's latest result, as a message for it (for a resync).
    pub(super) fn current(&self, member: MemberId) -> Option<ServerMessage> {
        if let Some(job) = self.inner.jobs.current(member) {
            return Some(job);
        }
        let key = *lock(&self.inner.members).get(&member)?;
        let groups = self.inner.lock_groups();
        let group = groups.get(&key)?;
        let sub = &group.members.get(&member)?.sub;
        group.last.as_ref().map(|last| last.outcome.message(sub))
    }

    /// Watches job `job` for `outbox`'s connection under the client's name `sub`: operators
    /// (`[dashboard] role`) any job, a job API client its own (another's is "not found", as in
    /// `/v1`); anyone else is refused.
    pub(super) async fn watch_job(
        &self,
        outbox: &Outbox,
        sub: &str,
        job: i64,
        cursor: Option<String>,
        auth: &Auth,
    ) -> Result<MemberId, ServerMessage> {
        let refuse = |e: ForgeError| ServerMessage::error(Some(sub.to_owned()), &e);
        if !auth.is_authenticated() {
            return Err(refuse(ForgeError::Unauthorized));
        }
        let client = auth.client().map(|c| c.id);
        if client.is_none() && !auth.has_role(&self.inner.operator_role) {
            return Err(refuse(ForgeError::Forbidden(format!(
                "watching jobs needs the `{}` role or a job API client's key",
                self.inner.operator_role
            ))));
        }
        let row = jobs::fetch(self.inner.gateway.pool(), &[job])
            .await
            .map_err(|e| refuse(ForgeError::Internal(e.to_string())))?
            .into_iter()
            .next()
            .filter(|row| client.is_none() || row.client_id == client)
            .ok_or_else(|| refuse(ForgeError::NotFound(format!("no job {job}"))))?;
        self.follow();
        let member = self.inner.next_member.fetch_add(1, Ordering::Relaxed);
        self.inner.jobs.add(member, row, outbox, sub, cursor);
        Ok(member)
    }

    /// Subscription groups on this node (for tests and metrics).
    pub fn groups(&self) -> usize {
        self.inner.lock_groups().len()
    }

    /// Makes sure the tables a query reads (every application table for `None`) have the
    /// change trigger.
    async fn watch(&self, reads: Option<&'static [&'static str]>) -> Result<(), sqlx::Error> {
        let mut watched = self.inner.watched.lock().await;
        let pool = self.inner.gateway.pool();
        let wanted: Vec<String> = match reads {
            Some(tables) => tables.iter().filter(|t| !watched.tables.contains(**t)).map(|t| (*t).to_owned()).collect(),
            None if watched.all => Vec::new(),
            None => {
                let tables = changes::user_tables(pool).await?;
                tables.into_iter().filter(|t| !watched.tables.contains(t)).collect()
            }
        };
        if !wanted.is_empty() {
            let installed = changes::install(pool, &wanted).await?;
            watched.tables.extend(installed);
        }
        if reads.is_none() {
            watched.all = true;
        }
        Ok(())
    }

    /// Starts following the change feed, once.
    fn follow(&self) {
        if !self.inner.following.swap(true, Ordering::AcqRel) {
            tokio::spawn(follow(self.inner.clone()));
        }
    }
}

impl Inner {
    fn lock_groups(&self) -> MutexGuard<'_, HashMap<GroupKey, Group>> {
        lock(&self.groups)
    }

    /// Runs every group that reads one of `tables` again.
    fn changed(self: &Arc<Self>, tables: &BTreeSet<String>) {
        let due: Vec<GroupKey> = {
            let mut groups = self.lock_groups();
            let mut due = Vec::new();
            for (key, group) in groups.iter_mut() {
                if group.source.is_some() {
                    continue;
                }
                let reads_one = group.reads.is_none_or(|reads| reads.iter().any(|t| tables.contains(*t)));
                if !reads_one {
                    continue;
                }
                if group.running {
                    group.again = true;
                } else {
                    group.running = true;
                    due.push(*key);
                }
            }
            due
        };
        for key in due {
            tokio::spawn(run_group(self.clone(), key));
        }
    }
}

impl Inner {
    /// Runs every source group whose last run ended `source_poll` ago or more, and at least
    /// ten times as long as that run took: a source that is slow to read (a count over a large
    /// `forge_jobs`) keeps at most a tenth of one connection busy.
    fn poll_sources(self: &Arc<Self>) {
        let every = self.config.source_poll.as_std();
        let due: Vec<GroupKey> = {
            let mut groups = self.lock_groups();
            let mut due = Vec::new();
            for (key, group) in groups.iter_mut() {
                let wait = every.max(group.took * SOURCE_COST_FACTOR);
                let stale = group.ran_at.is_some_and(|at| at.elapsed() >= wait);
                if group.source.is_some() && stale && !group.running {
                    group.running = true;
                    due.push(*key);
                }
            }
            due
        };
        for key in due {
            tokio::spawn(run_group(self.clone(), key));
        }
    }
}

/// `Authorization: Bearer <token>`: how a token sent in a message or a query string is checked.
pub(super) fn bearer(token: &str) -> Result<HeaderMap, AuthError> {
    let value = format!("Bearer {}", token.trim()).parse().map_err(|_| AuthError::MalformedHeader)?;
    let mut headers = HeaderMap::new();
    headers.insert(axum::http::header::AUTHORIZATION, value);
    Ok(headers)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs a group's query until no change arrived during its run, pushing each result that
/// differs from the last.
async fn run_group(inner: Arc<Inner>, key: GroupKey) {
    loop {
        let Some((function, args, auth, source)) = inner
            .lock_groups()
            .get(&key)
            .map(|g| (g.function.clone(), g.args.clone(), g.auth.clone(), g.source.clone()))
        else {
            return;
        };
        let (result, took) = {
            let _slot = inner.runs.acquire().await;
            let started = tokio::time::Instant::now();
            let result = match source {
                Some(source) => source.run(args).await,
                None => {
                    let parts = inner.gateway.call_parts().with_auth(auth);
                    inner.gateway.functions().rerun(&function, parts, args).await
                }
            };
            (result, started.elapsed())
        };
        let refused = result.as_ref().is_err_and(|e| e.status().is_client_error());
        let outcome = match result {
            Ok(data) => Outcome::Data(data),
            Err(e) => {
                if e.status().is_server_error() {
                    tracing::warn!(query = %function, error = %e, "a live query failed");
                }
                Outcome::Error(Box::new(ServerMessage::error(None, &e)))
            }
        };
        let hash: [u8; 32] = match &outcome {
            Outcome::Data(data) => Sha256::digest(data.to_string().as_bytes()).into(),
            Outcome::Error(message) => {
                Sha256::digest(serde_json::to_vec(message.as_ref()).unwrap_or_default().as_slice()).into()
            }
        };
        let mut groups = inner.lock_groups();
        let Some(group) = groups.get_mut(&key) else {
            return;
        };
        group.ran_at = Some(tokio::time::Instant::now());
        group.took = took;
        if refused && group.last.is_none() {
            // The first run was refused: the subscriptions end with the reason.
            let group = groups.remove(&key).expect("the group is there");
            drop(groups);
            let mut members = lock(&inner.members);
            for (id, member) in group.members {
                members.remove(&id);
                member.outbox.send(Outgoing { message: outcome.message(&member.sub), ended: Some(id) });
            }
            return;
        }
        if group.last.as_ref().is_none_or(|last| last.hash != hash) {
            for member in group.members.values() {
                member.outbox.push(outcome.message(&member.sub));
            }
            group.last = Some(Last { hash, outcome });
        }
        if group.again {
            group.again = false;
        } else {
            group.running = false;
            return;
        }
    }
}

/// Follows the change feed until the node stops: reads it every `poll`, at once after a
/// mutation on this node and after another node's hint, and runs the groups a change touches.
async fn follow(inner: Arc<Inner>) {
    let pool = inner.gateway.pool().clone();
    let config = inner.config.clone();
    let (poll, debounce) = (config.poll.as_std(), config.debounce.as_std());
    let mut feed = loop {
        match ChangeFeed::start(pool.clone()).await {
            Ok(feed) => break feed,
            Err(e) => {
                tracing::warn!(error = %e, "the change feed could not start; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = inner.stop.cancelled() => return,
                }
            }
        }
    };
    let mut listener = None;
    let mut last_hint = tokio::time::Instant::now();
    let mut last_prune = tokio::time::Instant::now();
    let writes = inner.gateway.writes().clone();
    loop {
        if config.listen && listener.is_none() {
            listener = listen(&pool).await;
        }
        let local = tokio::select! {
            () = inner.stop.cancelled() => return,
            () = tokio::time::sleep(poll) => false,
            () = writes.notified() => true,
            hint = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            } => {
                if let Err(e) = hint {
                    tracing::debug!(error = %e, "the change hint listener failed; polling until it is back");
                    listener = None;
                }
                false
            }
        };
        // Gather a burst of changes into one read (and one run per group).
        tokio::select! {
            () = inner.stop.cancelled() => return,
            () = tokio::time::sleep(debounce) => {}
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = tokio::time::Instant::now();
            if let Err(e) = changes::prune(&pool, config.change_retention.as_std()).await {
                tracing::debug!(error = %e, "old changes could not be deleted");
            }
        }
        if !inner.jobs.is_empty()
            && let Err(e) = inner.jobs.poll(&pool).await
        {
            tracing::warn!(error = %e, "watched jobs could not be read");
        }
        inner.poll_sources();
        // Nobody subscribed here and no write of this node to tell others about: no read (the
        // next one covers everything since the last).
        if !local && inner.lock_groups().is_empty() {
            continue;
        }
        match feed.read().await {
            Ok(tables) if !tables.is_empty() => {
                inner.changed(&tables);
                if local && config.listen && last_hint.elapsed() >= debounce {
                    last_hint = tokio::time::Instant::now();
                    if let Err(e) = changes::hint(&pool).await {
                        tracing::debug!(error = %e, "the change hint could not be sent");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the change feed could not be read"),
        }
    }
}

async fn listen(pool: &sqlx::PgPool) -> Option<sqlx::postgres::PgListener> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await.ok()?;
    listener.listen(super::sql::CHANNEL).await.ok()?;
    Some(listener)
}
