//! [`TelemetryLayer`]: the `tracing` layer that feeds each node's buffers.
//!
//! Every span gets a [`SpanContext`] inherited from its parent (or, outside any stored span, from
//! the job attempt its task runs): the node it belongs to, the trace, the job (`job_id`,
//! `cron`) and the function. Root spans name their node with a
//! `node_id` field and their trace with `trace_id` (and `parent_span_id` when the trace came
//! from elsewhere, such as a `traceparent` header or a job's dispatcher). Events become log
//! records carrying that context; spans inside a trace become span records when they close.
//!
//! Fields with a meaning here: `node_id`, `trace_id`, `parent_span_id`, `job_id`, `cron`,
//! `function`, `span_kind` (`server`, `consumer`, `producer`, `internal`) and `status` (a
//! span whose `status` is `error`, or in which an `ERROR` event happened, failed), and
//! `trace_sampled` (a `bool`, not stored: the caller asked for this trace).
//!
//! A `forge.http` span is stored when the request failed, was slow, has anything stored inside
//! it, is named as a parent outside it (a job it dispatched, its `traceparent` handed on), or
//! arrived with a sampled `traceparent`; a plain one only within the node's
//! `request_spans` per second (see [`Telemetry::set_request_spans`](super::Telemetry::set_request_spans)).

use std::borrow::Cow;
use std::time::{Instant, SystemTime};

use chrono::{DateTime, Utc};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

use super::logs::{LogRecord, level_name};
use super::telemetry;
use super::trace_context::{
    ACCESS_TARGET, FUNCTION_SPAN, HTTP_SPAN, JOB_ATTEMPT_SPAN, Referenced, SpanContext, SpanId, TRACE_SAMPLED, TraceId,
    TraceParent, task_context,
};
use super::traces::SpanRecord;

/// Targets never stored: the database driver (writing its statements would log more
/// statements) and telemetry's own complaints.
const SKIPPED_TARGETS: [&str; 2] = ["sqlx", "forge::telemetry"];

/// The layer storing events and spans of every node in this process. Installed by
/// [`crate::init_tracing`] and by [`crate::Forge::start`] when the process has no subscriber;
/// an application with its own subscriber adds [`TelemetryLayer::new`] to it.
#[derive(Clone, Debug, Default)]
pub struct TelemetryLayer {
    _private: (),
}

impl TelemetryLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The filter to put on a [`TelemetryLayer`]: `directives` (an `EnvFilter`, such as `"info"`)
/// for what is stored, with three records left out because another record already stores
/// what they say:
///
/// - the `forge.job` span, which the worker records itself (it exists for printed logs only; a
///   job's records get their context from the attempt's task);
/// - a `forge.function` span directly inside a `forge.http` span: the request's span carries
///   the function's name and kind (one stored row per `/rpc` call, not two);
/// - a `forge::access` line below `warn` (every answer but a 5xx), unless `directives` name
///   the `forge::access` target: the request's span carries its method, path, route, status
///   and duration.
#[derive(Debug)]
pub struct StoreFilter {
    env: EnvFilter,
    /// Whether every access line is stored (the directives name [`ACCESS_TARGET`]).
    access_lines: bool,
    /// Whether a directive depends on the spans an event is in (`target[span{field}]=level`):
    /// only then does the `EnvFilter` need to hear of each span entered, left, recorded and
    /// closed. Without, those calls only take its locks, which every core shares.
    span_directives: bool,
}

impl StoreFilter {
    /// A filter storing what `directives` enable.
    pub fn new(directives: &str) -> Result<Self, tracing_subscriber::filter::ParseError> {
        Ok(Self {
            env: EnvFilter::try_new(directives)?,
            access_lines: directives.contains(ACCESS_TARGET),
            // The syntax of a span directive is the only one with brackets.
            span_directives: directives.contains('['),
        })
    }

    fn is_job_span(meta: &Metadata<'_>) -> bool {
        meta.is_span() && meta.name() == JOB_SPAN
    }

    fn is_function_span(meta: &Metadata<'_>) -> bool {
        meta.is_span() && meta.name() == FUNCTION_SPAN
    }

    /// An access line the request's span already tells.
    fn is_plain_access_line(&self, meta: &Metadata<'_>) -> bool {
        !self.access_lines && meta.is_event() && meta.target() == ACCESS_TARGET && *meta.level() > tracing::Level::WARN
    }
}

/// The name of the printed-only span around a job attempt.
pub(crate) const JOB_SPAN: &str = JOB_ATTEMPT_SPAN;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Filter<S> for StoreFilter {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        if Self::is_job_span(meta) || self.is_plain_access_line(meta) {
            return false;
        }
        if Self::is_function_span(meta) && cx.lookup_current().is_some_and(|parent| parent.name() == HTTP_SPAN) {
            return false;
        }
        Filter::<S>::enabled(&self.env, meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if Self::is_job_span(meta) || self.is_plain_access_line(meta) {
            return Interest::never();
        }
        let interest = Filter::<S>::callsite_enabled(&self.env, meta);
        // Stored or not depending on its parent: asked each time.
        if Self::is_function_span(meta) && !interest.is_never() { Interest::sometimes() } else { interest }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Filter::<S>::max_level_hint(&self.env)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if self.span_directives {
            Filter::<S>::on_new_span(&self.env, attrs, id, ctx);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if self.span_directives {
            Filter::<S>::on_record(&self.env, id, values, ctx);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if self.span_directives {
            Filter::<S>::on_enter(&self.env, id, ctx);
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if self.span_directives {
            Filter::<S>::on_exit(&self.env, id, ctx);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if self.span_directives {
            Filter::<S>::on_close(&self.env, id, ctx);
        }
    }
}

impl StoreFilter {
    /// Whether the filter must hear of each span entered and left: only a directive that
    /// depends on the spans an event is in needs it.
    pub fn needs_span_entries(&self) -> bool {
        self.span_directives
    }
}

impl TelemetryLayer {
    /// The layer storing what `filter` enables, as Forge installs it: `with_filter(filter)`,
    /// told when a span is entered or left only if the filter needs it (see [`Unentered`]).
    pub fn filtered<S>(self, filter: StoreFilter) -> Unentered<Filtered<Self, StoreFilter, S>>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let entries = filter.needs_span_entries();
        Unentered::new(self.with_filter(filter), entries)
    }
}

/// A layer that is not told when spans are entered and left (unless `entries`), for a layer and
/// filter that do nothing then, such as [`TelemetryLayer`] and the `fmt` layer without span
/// events. What it saves: a per-layer filter (`Filtered`) looks each span up in the registry at
/// every entry and exit to learn whether it is enabled for its layer, and spans are entered at
/// every poll of a future inside them: the request's span at each poll of the request, and the
/// same span again at each poll of each query's stream (sqlx runs its streams in the current
/// span), a dozen or so lookups a request for nothing. Everything else is passed on as is.
#[derive(Debug)]
pub struct Unentered<L> {
    layer: L,
    entries: bool,
}

impl<L> Unentered<L> {
    /// `layer`, told of span entries and exits only if `entries`.
    pub fn new(layer: L, entries: bool) -> Self {
        Self { layer, entries }
    }
}

impl<S: Subscriber, L: Layer<S>> Layer<S> for Unentered<L> {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.layer.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.layer.on_layer(subscriber);
    }

    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        self.layer.register_callsite(meta)
    }

    fn enabled(&self, meta: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.layer.enabled(meta, ctx)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.layer.on_new_span(attrs, id, ctx);
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.layer.max_level_hint()
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.layer.on_record(id, values, ctx);
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.layer.on_follows_from(span, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.layer.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.layer.on_event(event, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if self.entries {
            self.layer.on_enter(id, ctx);
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if self.entries {
            self.layer.on_exit(id, ctx);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.layer.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.layer.on_id_change(old, new, ctx);
    }

    #[doc(hidden)]
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            Some(std::ptr::from_ref(self).cast())
        } else {
            // SAFETY: passed on to the inner layer, whose answer (a pointer to itself or to a
            // part of it, or its marker of a per-layer filter) stays valid as long as `self`.
            unsafe { self.layer.downcast_raw(id) }
        }
    }
}

/// What the layer keeps in a span's extensions, in one entry (one lookup per record and
/// close): the context it passes on and what it records about itself.
#[derive(Debug)]
pub(crate) struct SpanState {
    pub(crate) context: SpanContext,
    recording: Recording,
}

/// What a span records about itself until it closes.
#[derive(Debug)]
struct Recording {
    name: &'static str,
    kind: Cow<'static, str>,
    /// The wall clock at the start, turned into a date only if the span is stored.
    started_at: SystemTime,
    started: Instant,
    attributes: Fields,
    error: bool,
    /// Something inside was stored (a log record, a span) or the caller asked for the trace
    /// (`trace_sampled`): a request span is then stored whatever the request budget says.
    keep: bool,
}

/// A span's attributes until it closes: their texts one after another in one buffer, numbers
/// and flags as they came. They become JSON values only if the span is stored, which most
/// request spans are not: a span costs two allocations, not one per field.
#[derive(Debug)]
struct Fields {
    text: String,
    entries: Vec<(&'static str, Attribute)>,
}

/// One attribute: where its text is in [`Fields::text`], or its value.
#[derive(Debug)]
enum Attribute {
    Text(std::ops::Range<usize>),
    Value(serde_json::Value),
}

impl Fields {
    /// Room for `fields` attributes and the texts of a request span (method, route, path,
    /// request id, client address) without growing.
    fn with_capacity(fields: usize) -> Self {
        Self { text: String::with_capacity(if fields == 0 { 0 } else { 160 }), entries: Vec::with_capacity(fields) }
    }

    /// The attributes as JSON values, in the order they were recorded.
    fn into_pairs(self) -> Vec<(&'static str, serde_json::Value)> {
        let Self { text, entries } = self;
        entries
            .into_iter()
            .map(|(name, field)| match field {
                Attribute::Text(range) => (name, serde_json::Value::String(text[range].to_owned())),
                Attribute::Value(value) => (name, value),
            })
            .collect()
    }
}

struct SpanFields<'a> {
    context: &'a mut SpanContext,
    recording: &'a mut Recording,
}

impl SpanFields<'_> {
    /// A field whose text was just written to the end of the attributes' buffer, from
    /// `start`: read into the span's context (and taken off the buffer), or kept as an
    /// attribute.
    fn text_from(&mut self, field: &Field, start: usize) {
        let Self { context, recording } = self;
        let Recording { attributes, kind, error, .. } = &mut **recording;
        let value = &attributes.text[start..];
        let consumed = match field.name() {
            "node_id" => {
                context.node = telemetry::node(value);
                true
            }
            "trace_id" => {
                if let Some(trace_id) = TraceId::parse(value) {
                    if context.trace_id != Some(trace_id) {
                        // A new trace: the inherited parent belongs to another one.
                        context.parent_span_id = None;
                    }
                    context.trace_id = Some(trace_id);
                }
                true
            }
            "parent_span_id" => {
                if let Some(parent) = SpanId::parse(value) {
                    context.parent_span_id = Some(parent);
                }
                true
            }
            "span_kind" => {
                *kind = span_kind(value);
                true
            }
            name => {
                match name {
                    "cron" => context.cron = Some(value.to_owned()),
                    "function" => context.function = Some(value.to_owned()),
                    "status" if value == "error" => *error = true,
                    _ => {}
                }
                false
            }
        };
        if consumed {
            attributes.text.truncate(start);
        } else {
            let end = attributes.text.len();
            attributes.entries.push((field.name(), Attribute::Text(start..end)));
        }
    }

    fn value(&mut self, field: &Field, value: serde_json::Value) {
        match field.name() {
            // A column of its own.
            "job_id" => self.context.job_id = value.as_i64(),
            TRACE_SAMPLED => self.recording.keep |= value.as_bool() == Some(true),
            _ => self.recording.attributes.entries.push((field.name(), Attribute::Value(value))),
        }
    }
}

impl Visit for SpanFields<'_> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.value(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.value(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.value(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.value(field, value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let start = self.recording.attributes.text.len();
        self.recording.attributes.text.push_str(value);
        self.text_from(field, start);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // Written straight into the buffer: no string of its own.
        let start = self.recording.attributes.text.len();
        let _ = std::fmt::Write::write_fmt(&mut self.recording.attributes.text, format_args!("{value:?}"));
        self.text_from(field, start);
    }
}

/// A span's kind, without a copy for the usual ones.
fn span_kind(kind: &str) -> Cow<'static, str> {
    match kind {
        "server" => Cow::Borrowed("server"),
        "client" => Cow::Borrowed("client"),
        "producer" => Cow::Borrowed("producer"),
        "consumer" => Cow::Borrowed("consumer"),
        "internal" => Cow::Borrowed("internal"),
        other => Cow::Owned(other.to_owned()),
    }
}

/// An event's message and fields.
#[derive(Default)]
struct EventFields {
    message: String,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl Visit for EventFields {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name().to_owned(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.insert(field.name().to_owned(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.message);
        } else {
            self.fields.insert(field.name().to_owned(), value.into());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.insert(field.name().to_owned(), text.into());
        }
    }
}

/// The Unix second `at` falls in.
fn unix_second(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn skipped(target: &str) -> bool {
    SKIPPED_TARGETS.iter().any(|t| target.starts_with(t))
}

impl<S> Layer<S> for TelemetryLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if skipped(span.metadata().target()) {
            return;
        }
        let mut context = span
            .parent()
            .and_then(|parent| parent.extensions().get::<SpanState>().map(|s| s.context.clone()))
            .or_else(task_context)
            .unwrap_or_default();
        context.parent_span_id = context.span_id.take();
        context.span_id = Some(SpanId::new());
        let mut recording = Recording {
            name: span.metadata().name(),
            kind: Cow::Borrowed("internal"),
            started_at: SystemTime::now(),
            started: Instant::now(),
            attributes: Fields::with_capacity(attrs.fields().len()),
            error: false,
            keep: false,
        };
        attrs.record(&mut SpanFields { context: &mut context, recording: &mut recording });
        span.extensions_mut().insert(SpanState { context, recording });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanState { context, recording }) = extensions.get_mut::<SpanState>() {
            values.record(&mut SpanFields { context, recording });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if skipped(meta.target()) {
            return;
        }
        let span = ctx.event_span(event);
        let context = span
            .as_ref()
            .and_then(|span| span.extensions().get::<SpanState>().map(|s| s.context.clone()))
            .or_else(task_context);
        let Some(node) = context.as_ref().and_then(|c| c.node.clone()).or_else(telemetry::default_node) else {
            return;
        };
        if let Some(span) = &span
            && let Some(SpanState { recording, .. }) = span.extensions_mut().get_mut::<SpanState>()
        {
            recording.keep = true;
            recording.error |= *meta.level() == tracing::Level::ERROR;
        }
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let context = context.unwrap_or_default();
        node.push_log(LogRecord {
            at: Utc::now(),
            level: level_name(*meta.level()),
            target: meta.target().to_owned(),
            message: fields.message,
            fields: fields.fields,
            trace_id: context.trace_id,
            span_id: context.span_id,
            job_id: context.job_id,
            cron: context.cron,
            function: context.function,
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let mut extensions = span.extensions_mut();
        let Some(SpanState { context, recording }) = extensions.remove::<SpanState>() else { return };
        let referenced = extensions.remove::<Referenced>().is_some();
        drop(extensions);
        let (Some(node), Some(trace_id), Some(span_id)) = (context.node, context.trace_id, context.span_id) else {
            return;
        };
        let duration_us = i64::try_from(recording.started.elapsed().as_micros()).unwrap_or(i64::MAX);
        if recording.name == HTTP_SPAN
            && !(recording.keep || recording.error || referenced)
            && !node.stores_plain_request(unix_second(recording.started_at), duration_us)
        {
            return;
        }
        // A stored span keeps the spans it is inside, so its trace has no holes.
        if let Some(parent) = span.parent()
            && let Some(SpanState { recording, .. }) = parent.extensions_mut().get_mut::<SpanState>()
        {
            recording.keep = true;
        }
        let started_at = DateTime::<Utc>::from(recording.started_at);
        node.push_span(SpanRecord {
            trace_id,
            span_id,
            parent_span_id: context.parent_span_id,
            name: recording.name.to_owned(),
            kind: recording.kind.into_owned(),
            started_at,
            duration_us,
            status: if recording.error { "error" } else { "ok" },
            attributes: recording.attributes.into_pairs(),
            job_id: context.job_id,
            function: context.function,
        });
    }
}

/// The trace context of the current span (or job attempt), if it is inside a trace.
pub(crate) fn current_context() -> Option<SpanContext> {
    context_in_scope(false)
}

/// Like [`current_context`], for work that will name the span as its parent: the span is
/// marked [`Referenced`].
pub(crate) fn referenced_context() -> Option<SpanContext> {
    context_in_scope(true)
}

/// The context of the innermost span in scope that has one (marked [`Referenced`] if
/// `reference`), else the job attempt's.
fn context_in_scope(reference: bool) -> Option<SpanContext> {
    use tracing_subscriber::registry::{LookupSpan, Registry};
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<Registry>()?;
            let span = registry.span(id)?;
            span.scope().find_map(|s| {
                let context = s.extensions().get::<SpanState>().map(|state| state.context.clone())?;
                if reference {
                    s.extensions_mut().replace(Referenced);
                }
                Some(context)
            })
        })
        .flatten()
        .or_else(task_context)
}

/// The W3C `traceparent` of the current span, for work it starts elsewhere (a job it
/// dispatches, a call to another service). The span is then stored even if it is a plain
/// request beyond `[observability] request_spans`, so the trace has no hole.
pub fn current_traceparent() -> Option<TraceParent> {
    referenced_context().and_then(|c| c.traceparent())
}

/// The metrics of the node the current span belongs to (or the process's oldest node).
pub(crate) fn current_metrics() -> Option<super::Metrics> {
    current_context().and_then(|c| c.node).or_else(telemetry::default_node).map(|t| t.metrics().clone())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A layer noting the spans and events it is given.
    struct Noted(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Noted {
        fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
            self.0.lock().expect("noted").push(attrs.metadata().name().to_owned());
        }

        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let meta = event.metadata();
            self.0.lock().expect("noted").push(format!("{} {}", meta.target(), meta.level()));
        }
    }

    /// What a [`StoreFilter`] with `directives` lets through of a request calling a function,
    /// answering 200 then 500, and of a function called outside any request.
    fn stored(directives: &str) -> Vec<String> {
        let noted = Arc::new(Mutex::new(Vec::new()));
        let filter = StoreFilter::new(directives).expect("directives");
        let subscriber = tracing_subscriber::registry().with(as_installed(Noted(noted.clone()), filter));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!(HTTP_SPAN).in_scope(|| {
                tracing::info_span!(FUNCTION_SPAN).in_scope(|| tracing::info!("inside the function"));
                tracing::info!(target: ACCESS_TARGET, "request");
                tracing::warn!(target: ACCESS_TARGET, "request");
            });
            tracing::info_span!(FUNCTION_SPAN).in_scope(|| {});
        });
        noted.lock().expect("noted").clone()
    }

    #[test]
    fn a_request_is_stored_once_and_its_access_line_only_for_a_5xx_or_when_named() {
        let event = format!("{} INFO", module_path!());
        assert_eq!(
            stored("info"),
            [HTTP_SPAN, &event, &format!("{ACCESS_TARGET} WARN"), FUNCTION_SPAN],
            "the function inside the request is the request's span; outside one it is its own"
        );
        assert_eq!(
            stored("info,forge::access=info"),
            [HTTP_SPAN, &event, &format!("{ACCESS_TARGET} INFO"), &format!("{ACCESS_TARGET} WARN"), FUNCTION_SPAN]
        );
        assert_eq!(stored("warn"), [format!("{ACCESS_TARGET} WARN")]);
    }

    /// `layer` filtered by `filter` as [`TelemetryLayer::filtered`] does.
    fn as_installed<S>(layer: Noted, filter: StoreFilter) -> Unentered<Filtered<Noted, StoreFilter, S>>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let entries = filter.needs_span_entries();
        Unentered::new(layer.with_filter(filter), entries)
    }

    /// What a layer filtered by `warn,[bank.call]=info` is given of an `info` line outside and
    /// inside a `bank.call` span, when told of span entries (`entries`) or not.
    fn inside_bank_call(entries: bool) -> Vec<String> {
        let noted = Arc::new(Mutex::new(Vec::new()));
        let filter = StoreFilter::new("warn,[bank.call]=info").expect("directives");
        let layer = Unentered::new(Noted(noted.clone()).with_filter(filter), entries);
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::info!("outside");
            tracing::warn_span!("bank.call").in_scope(|| tracing::info!("inside"));
            tracing::info!("outside again");
        });
        noted.lock().expect("noted").clone()
    }

    #[test]
    fn a_directive_naming_a_span_applies_inside_it() {
        // Without brackets the filter skips hearing of spans entered and left; with them it
        // must hear, or the `info` inside `bank.call` would be dropped.
        let filter = StoreFilter::new("warn,[bank.call]=info").expect("directives");
        assert!(filter.needs_span_entries());
        assert_eq!(inside_bank_call(true), ["bank.call".to_owned(), format!("{} INFO", module_path!())]);
        // Not told (what `Unentered` saves when no directive needs it), the filter misses it.
        assert_eq!(inside_bank_call(false), ["bank.call".to_owned()]);
        assert!(!StoreFilter::new("info,sqlx=warn").expect("directives").needs_span_entries());
    }

    #[test]
    fn an_unentered_layer_keeps_its_own_filter_and_the_others_see_everything() {
        let filtered = Arc::new(Mutex::new(Vec::new()));
        let plain = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry()
            .with(as_installed(Noted(filtered.clone()), StoreFilter::new("warn").expect("directives")))
            .with(Noted(plain.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!("work").in_scope(|| {
                tracing::info!("routine");
                tracing::warn!("odd");
            });
        });
        let here = module_path!();
        assert_eq!(*filtered.lock().expect("noted"), [format!("{here} WARN")]);
        assert_eq!(*plain.lock().expect("noted"), ["work".to_owned(), format!("{here} INFO"), format!("{here} WARN")]);
    }

    #[test]
    fn the_telemetry_layer_is_found_in_a_subscriber_through_its_wrappers() {
        let layer = TelemetryLayer::new().filtered(StoreFilter::new("info").expect("directives"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            assert!(tracing::dispatcher::get_default(|d| d.is::<TelemetryLayer>()));
        });
    }
}
