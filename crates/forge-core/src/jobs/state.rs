//! [`JobState`] and its transition table.

use std::fmt;
use std::str::FromStr;

/// Where a job is in its life. Stored as its lowercase name (`forge_jobs.state` is text); with
/// the `sqlx` feature it binds and decodes as that text directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for its `run_at`; maintenance makes it available when the time comes.
    Scheduled,
    /// Ready to be claimed by a worker.
    Available,
    /// Claimed by a worker, which holds a lease on it.
    Running,
    /// Failed with attempts left; becomes available at its `run_at`.
    Retryable,
    /// Finished successfully. Final.
    Completed,
    /// Failed for good (permanent error, or attempts exhausted). Final unless retried by hand.
    Discarded,
    /// Cancelled before finishing. Final unless retried by hand.
    Cancelled,
}

/// A transition [`JobState::can_transition`] forbids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a job cannot go from {from} to {to}")]
pub struct InvalidTransition {
    /// The state the job was in.
    pub from: JobState,
    /// The state asked for.
    pub to: JobState,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 7] = [
        JobState::Scheduled,
        JobState::Available,
        JobState::Running,
        JobState::Retryable,
        JobState::Completed,
        JobState::Discarded,
        JobState::Cancelled,
    ];

    /// The name stored in `forge_jobs.state`.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Retryable => "retryable",
            JobState::Completed => "completed",
            JobState::Discarded => "discarded",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether the job is finished: completed, discarded or cancelled.
    pub const fn is_final(self) -> bool {
        matches!(self, JobState::Completed | JobState::Discarded | JobState::Cancelled)
    }

    /// Whether the job still counts for uniqueness: scheduled, available, running or retryable.
    pub const fn is_live(self) -> bool {
        !self.is_final()
    }

    /// The transition table: whether a job in `self` may move to `to`.
    pub const fn can_transition(self, to: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, to),
            (Scheduled, Available)
                | (Available, Running)
                // The attempt's outcomes.
                | (Running, Completed)
                | (Running, Retryable)
                | (Running, Discarded)
                | (Running, Cancelled)
                // Snoozed: back to waiting, the attempt not counted.
                | (Running, Scheduled)
                // Released at shutdown, or rescued from a dead node with attempts left and no
                // backoff: the attempt is not counted as a failure.
                | (Running, Available)
                | (Retryable, Available)
                // An attempt that ended inside its claim window: the claim held the row with a
                // lock instead of writing `running`, and the outcome is the row's one write
                // (snoozed there: the attempt not counted; one released at shutdown writes
                // nothing, the job stays `available`).
                | (Available, Completed)
                | (Available, Retryable)
                | (Available, Discarded)
                | (Available, Scheduled)
                // Cancelling anything not yet finished.
                | (Scheduled, Cancelled)
                | (Available, Cancelled)
                | (Retryable, Cancelled)
                // An operator's retry of a job that ended badly.
                | (Discarded, Available)
                | (Cancelled, Available)
        )
    }

    /// `Ok(to)` if the table allows it.
    pub fn transition(self, to: JobState) -> Result<JobState, InvalidTransition> {
        if self.can_transition(to) { Ok(to) } else { Err(InvalidTransition { from: self, to }) }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| format!("unknown job state {s:?}"))
    }
}

/// `JobState` as Postgres `text`: encoded and decoded by name, so SQL compares states without
/// Rust code spelling them.
#[cfg(feature = "sqlx")]
mod sql_mapping {
    use sqlx::encode::IsNull;
    use sqlx::error::BoxDynError;
    use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef, Postgres};

    use super::JobState;

    impl sqlx::Type<Postgres> for JobState {
        fn type_info() -> PgTypeInfo {
            <str as sqlx::Type<Postgres>>::type_info()
        }

        fn compatible(ty: &PgTypeInfo) -> bool {
            <str as sqlx::Type<Postgres>>::compatible(ty)
        }
    }

    impl PgHasArrayType for JobState {
        fn array_type_info() -> PgTypeInfo {
            <&str as PgHasArrayType>::array_type_info()
        }
    }

    impl sqlx::Encode<'_, Postgres> for JobState {
        fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
            <&str as sqlx::Encode<'_, Postgres>>::encode(self.as_str(), buf)
        }
    }

    impl<'r> sqlx::Decode<'r, Postgres> for JobState {
        fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
            Ok(<&str as sqlx::Decode<'r, Postgres>>::decode(value)?.parse::<JobState>()?)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn state() -> impl Strategy<Value = JobState> {
        prop::sample::select(JobState::ALL.to_vec())
    }

    /// Tables line up: width and alignment apply to a state (and a job id).
    #[test]
    fn display_honours_width() {
        assert_eq!(format!("[{:<10}]", JobState::Completed), "[completed ]");
        assert_eq!(format!("[{:>4}]", crate::jobs::JobId(7)), "[   7]");
        assert_eq!(format!("[{:<7}]", crate::jobs::Priority::High), "[high   ]");
    }

    proptest! {
        /// Names round-trip through the database's text form.
        #[test]
        fn names_round_trip(s in state()) {
            prop_assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
        }

        /// Only a claim makes a job run: nothing but `available` goes to `running`.
        #[test]
        fn only_available_jobs_start_running(from in state()) {
            prop_assert_eq!(from.can_transition(JobState::Running), from == JobState::Available);
        }

        /// Outcomes are decided by attempts: nothing but a running job, or an available one a
        /// claim window holds (locked, not written `running`), completes, fails or is discarded.
        #[test]
        fn only_claimed_jobs_finish(from in state()) {
            for to in [JobState::Completed, JobState::Retryable, JobState::Discarded] {
                prop_assert_eq!(from.can_transition(to), matches!(from, JobState::Running | JobState::Available));
            }
        }

        /// A completed job is done for good; other final states leave only by an operator's retry.
        #[test]
        fn final_states_stay_final(from in state(), to in state()) {
            if from == JobState::Completed {
                prop_assert!(!from.can_transition(to));
            } else if from.is_final() && from.can_transition(to) {
                prop_assert_eq!(to, JobState::Available);
            }
        }

        /// No state moves to itself: every transition is a real change.
        #[test]
        fn no_self_transitions(s in state()) {
            prop_assert!(!s.can_transition(s));
        }

        /// Any live job can be cancelled, directly or (when running) by its handler's outcome.
        #[test]
        fn live_jobs_can_be_cancelled(s in state()) {
            prop_assert_eq!(s.can_transition(JobState::Cancelled), s.is_live());
        }

        /// Walking the table at random from a new job, every reachable state can still reach a
        /// final one: no job is ever stuck.
        #[test]
        fn random_walks_never_get_stuck(choices in prop::collection::vec(0usize..16, 0..40)) {
            let mut s = JobState::Available;
            for c in choices {
                let next: Vec<JobState> = JobState::ALL.into_iter().filter(|t| s.can_transition(*t)).collect();
                if next.is_empty() {
                    prop_assert_eq!(s, JobState::Completed);
                    break;
                }
                s = s.transition(next[c % next.len()]).unwrap();
            }
            prop_assert!(reaches_final(s));
        }
    }

    fn reaches_final(from: JobState) -> bool {
        let mut seen = vec![from];
        let mut i = 0;
        while i < seen.len() {
            let s = seen[i];
            if s.is_final() {
                return true;
            }
            for t in JobState::ALL {
                if s.can_transition(t) && !seen.contains(&t) {
                    seen.push(t);
                }
            }
            i += 1;
        }
        false
    }

    #[test]
    fn forbidden_transitions_are_errors() {
        let err = JobState::Completed.transition(JobState::Running).unwrap_err();
        assert_eq!(err.to_string(), "a job cannot go from completed to running");
    }
}
