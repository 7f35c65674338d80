-- The job engine's uniqueness: "while live" keys (unique only among scheduled, available, running
-- and retryable jobs) and "per period" keys (unique among all jobs; the key carries the period's
-- window, so a new window allows a new job).

-- @up
alter table forge_jobs add column unique_period boolean not null default false;

drop index forge_jobs_unique_live_idx;

create unique index forge_jobs_unique_live_idx on forge_jobs (kind, unique_key)
    where unique_key is not null and not unique_period
      and state in ('scheduled', 'available', 'running', 'retryable');

create unique index forge_jobs_unique_period_idx on forge_jobs (kind, unique_key)
    where unique_key is not null and unique_period;

-- @down
drop index forge_jobs_unique_period_idx;
drop index forge_jobs_unique_live_idx;
alter table forge_jobs drop column unique_period;
create unique index forge_jobs_unique_live_idx on forge_jobs (kind, unique_key)
    where unique_key is not null and state in ('scheduled', 'available', 'running', 'retryable');
