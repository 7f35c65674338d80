//! Matching the steps a run's code asks for against the steps it recorded.
//!
//! Each call the code makes (`step`, `tx_step`, `sleep`, `wait_for_event`, `patched`,
//! `workflow_time`) takes the next position. A recorded step at that position with the same
//! name and kind is replayed; a different one means the code changed under the run (it
//! *diverged*) — except a recorded `patched` marker the code no longer asks for, which is
//! skipped (its branch became the only code). Past the recorded steps, every call is new.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use forge_core::workflows::{StepKind, StepStatus, step_name};

/// A step as the run recorded it.
#[derive(Clone, Debug, serde::Deserialize)]
pub(crate) struct RecordedStep {
    pub(crate) name: String,
    pub(crate) seq: i32,
    pub(crate) kind: StepKind,
    pub(crate) status: StepStatus,
    pub(crate) output: Option<serde_json::Value>,
    pub(crate) error: Option<String>,
    pub(crate) attempts: i32,
    pub(crate) wake_at: Option<DateTime<Utc>>,
    pub(crate) compensated: bool,
}

/// Where a call landed.
#[derive(Debug)]
pub(crate) enum Position {
    /// At a recorded step of the same name and kind.
    Recorded(RecordedStep),
    /// Past the recorded steps: new, at this position.
    New(i32),
    /// At a recorded step that is not what the code asks for.
    Diverged { seq: i32, reason: String },
}

/// The replay cursor of one execution.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    recorded: Vec<RecordedStep>,
    cursor: usize,
    next_seq: i32,
    occurrences: HashMap<String, u32>,
}

impl Replay {
    /// A cursor over `recorded` (in position order).
    pub(crate) fn new(recorded: Vec<RecordedStep>) -> Self {
        Self { recorded, ..Self::default() }
    }

    /// Whether a call now would be new (nothing recorded is left to replay).
    #[cfg(test)]
    pub(crate) fn at_end(&self) -> bool {
        self.cursor >= self.recorded.len()
    }

    /// The position of the next call, named `name`, of `kind`; returns the name with its
    /// occurrence.
    pub(crate) fn next(&mut self, name: &str, kind: StepKind) -> (String, Position) {
        let occurrence = {
            let n = self.occurrences.entry(name.to_owned()).or_insert(0);
            *n += 1;
            *n
        };
        let full = step_name(name, occurrence);
        while let Some(recorded) = self.recorded.get(self.cursor) {
            if recorded.name == full && recorded.kind == kind {
                self.cursor += 1;
                self.next_seq = recorded.seq + 1;
                return (full, Position::Recorded(recorded.clone()));
            }
            if recorded.kind == StepKind::Patch {
                // A patch marker the code no longer asks for: its new path is now the only one.
                self.cursor += 1;
                self.next_seq = recorded.seq + 1;
                continue;
            }
            let reason = format!(
                "at position {} the run recorded {} {:?}, but the code now asks for {} {:?}",
                recorded.seq, recorded.kind, recorded.name, kind, full
            );
            return (full, Position::Diverged { seq: recorded.seq, reason });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        (full, Position::New(seq))
    }

    /// `patched(id)`: true (and a marker is to be recorded at the returned position) past the
    /// recorded steps or at a recorded marker of that id; false, taking no position, when the
    /// run recorded something else here (it passed this point on the old code).
    pub(crate) fn patch(&mut self, id: &str) -> (bool, Option<i32>) {
        match self.recorded.get(self.cursor) {
            Some(r) if r.kind == StepKind::Patch && r.name == id => {
                self.cursor += 1;
                self.next_seq = r.seq + 1;
                (true, None)
            }
            Some(_) => (false, None),
            None => {
                let seq = self.next_seq;
                self.next_seq += 1;
                (true, Some(seq))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(name: &str, seq: i32, kind: StepKind) -> RecordedStep {
        RecordedStep {
            name: name.to_owned(),
            seq,
            kind,
            status: StepStatus::Completed,
            output: None,
            error: None,
            attempts: 1,
            wake_at: None,
            compensated: false,
        }
    }

    #[test]
    fn recorded_steps_replay_then_new_ones_follow() {
        let mut r = Replay::new(vec![recorded("a", 0, StepKind::Step), recorded("a#2", 1, StepKind::Step)]);
        assert!(matches!(r.next("a", StepKind::Step), (n, Position::Recorded(_)) if n == "a"));
        assert!(matches!(r.next("a", StepKind::Step), (n, Position::Recorded(_)) if n == "a#2"));
        assert!(r.at_end());
        assert!(matches!(r.next("a", StepKind::Step), (n, Position::New(2)) if n == "a#3"));
        assert!(matches!(r.next("b", StepKind::Sleep), (n, Position::New(3)) if n == "b"));
    }

    #[test]
    fn a_different_step_at_a_position_diverges() {
        let mut r = Replay::new(vec![recorded("charge", 0, StepKind::Step)]);
        let (_, p) = r.next("refund", StepKind::Step);
        assert!(matches!(p, Position::Diverged { seq: 0, ref reason } if reason.contains("charge")));
        let mut r = Replay::new(vec![recorded("charge", 0, StepKind::Step)]);
        assert!(matches!(r.next("charge", StepKind::TxStep).1, Position::Diverged { .. }));
    }

    #[test]
    fn patches_are_new_paths_for_new_runs_and_old_paths_for_old_ones() {
        // A run that passed the point on old code: the patch is false, the old step replays.
        let mut old = Replay::new(vec![recorded("email", 0, StepKind::Step)]);
        assert_eq!(old.patch("v2"), (false, None));
        assert!(matches!(old.next("email", StepKind::Step).1, Position::Recorded(_)));
        // A new run takes the new path and records the marker.
        let mut new = Replay::new(vec![]);
        assert_eq!(new.patch("v2"), (true, Some(0)));
        // A run that recorded the marker replays it as true.
        let mut marked = Replay::new(vec![recorded("v2", 0, StepKind::Patch), recorded("sms", 1, StepKind::Step)]);
        assert_eq!(marked.patch("v2"), (true, None));
        assert!(matches!(marked.next("sms", StepKind::Step).1, Position::Recorded(_)));
        // Once the patch call is removed from the code, its marker is skipped.
        let mut removed = Replay::new(vec![recorded("v2", 0, StepKind::Patch), recorded("sms", 1, StepKind::Step)]);
        assert!(matches!(removed.next("sms", StepKind::Step).1, Position::Recorded(_)));
    }
}
