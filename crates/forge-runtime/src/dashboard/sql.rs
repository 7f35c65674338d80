//! The dashboard API's SQL.

/// Jobs by state, over the whole table.
pub(crate) const STATE_COUNTS: &str = r#"select state, count(*) from forge_jobs group by state"#;

/// The latest failed attempts' jobs (retryable or discarded), newest first.
pub(crate) const RECENT_FAILURES: &str = r#"
select id, kind, queue, state, attempt, max_attempts, errors -> -1 ->> 'message' as error,
       coalesce(finalized_at, attempted_at) as at
from forge_jobs
where state in ('retryable', 'discarded')
order by id desc
limit 10
"#;

/// The stored metrics' names: a skip scan over `forge_metrics (name, at)`, one index probe per
/// name however many rows there are.
pub(crate) const METRIC_NAMES: &str = r#"
with recursive names(name) as (
    (select name from forge_metrics order by name limit 1)
    union all
    select (select m.name from forge_metrics m where m.name > n.name order by m.name limit 1)
    from names n
    where n.name is not null
)
select name from names where name is not null
"#;
