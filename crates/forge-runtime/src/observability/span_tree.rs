//! A trace as a tree: [`SpanNode`]s hung under their parents, roots in start order.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::trace_context::{SpanId, TraceId};

/// A span, with the spans that ran inside it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpanNode {
    /// Its id.
    pub span_id: SpanId,
    /// Its parent's id (a parent outside the trace's stored spans makes it a root).
    pub parent_span_id: Option<SpanId>,
    /// Its name.
    pub name: String,
    /// `server`, `consumer`, `producer` or `internal`.
    pub kind: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it lasted, in microseconds.
    pub duration_us: i64,
    /// `ok` or `error`.
    pub status: String,
    /// Its fields.
    pub attributes: serde_json::Value,
    /// The node it ran on.
    pub node_id: String,
    /// The job it belongs to.
    pub job_id: Option<i64>,
    /// The function it belongs to.
    pub function: Option<String>,
    /// The spans inside it, in start order.
    pub children: Vec<SpanNode>,
}

/// A trace: its spans as trees, roots in start order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trace {
    /// The trace's id.
    pub trace_id: TraceId,
    /// When its first span started.
    pub started_at: DateTime<Utc>,
    /// From its first span's start to its last span's end, in microseconds.
    pub duration_us: i64,
    /// How many spans it has.
    pub span_count: usize,
    /// Its root spans.
    pub roots: Vec<SpanNode>,
}

impl Trace {
    /// Every span, depth first.
    pub fn spans(&self) -> Vec<&SpanNode> {
        fn walk<'a>(node: &'a SpanNode, out: &mut Vec<&'a SpanNode>) {
            out.push(node);
            for child in &node.children {
                walk(child, out);
            }
        }
        let mut out = Vec::new();
        for root in &self.roots {
            walk(root, &mut out);
        }
        out
    }
}

/// Hangs each span under its parent; spans whose parent is not among them are roots.
pub(super) fn build_tree(spans: Vec<SpanNode>) -> Vec<SpanNode> {
    let ids: std::collections::HashSet<SpanId> = spans.iter().map(|s| s.span_id).collect();
    let mut children: HashMap<SpanId, Vec<SpanNode>> = HashMap::new();
    let mut roots = Vec::new();
    for span in spans {
        match &span.parent_span_id {
            Some(parent) if ids.contains(parent) && *parent != span.span_id => {
                children.entry(*parent).or_default().push(span);
            }
            _ => roots.push(span),
        }
    }
    fn attach(node: &mut SpanNode, children: &mut HashMap<SpanId, Vec<SpanNode>>, depth: usize) {
        if depth > 256 {
            return;
        }
        if let Some(mut kids) = children.remove(&node.span_id) {
            for kid in &mut kids {
                attach(kid, children, depth + 1);
            }
            node.children = kids;
        }
    }
    for root in &mut roots {
        attach(root, &mut children, 0);
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_hang_under_their_parents() {
        let id = |n: u8| SpanId::parse(&format!("{n:016x}")).expect("id");
        let span = |n: u8, parent: Option<u8>| SpanNode {
            span_id: id(n),
            parent_span_id: parent.map(id),
            name: n.to_string(),
            kind: "internal".to_owned(),
            started_at: Utc::now(),
            duration_us: 1,
            status: "ok".to_owned(),
            attributes: serde_json::json!({}),
            node_id: "n".to_owned(),
            job_id: None,
            function: None,
            children: Vec::new(),
        };
        // 9 is a parent outside the trace (another process's span).
        let roots = build_tree(vec![span(1, Some(9)), span(2, Some(1)), span(3, Some(2)), span(4, Some(1))]);
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].children.iter().map(|c| c.span_id).collect::<Vec<_>>(), [id(2), id(4)]);
        assert_eq!(roots[0].children[0].children[0].span_id, id(3));
    }
}
