-- The attempts a claim window started, kept where its rollback cannot undo them. A window
-- (`[worker] hold_claims`) locks its jobs instead of writing them `running`; before their
-- attempts start, its node writes the jobs and their attempt numbers here in a statement of
-- its own (one row per window slot of the node, updated in place: HOT, no index change), and
-- the window's own transaction empties the row when it writes the jobs. A row that is still
-- full once its window's transaction is gone (the node died, or its connection did) names
-- attempts that ran and left no trace: claims skip those jobs, and the lease sweep records the
-- attempts as lost (as it would for a classic claim's expired lease), so `max_attempts` bounds a
-- job that kills its node.

-- @up
create table forge_claim_slots (
    node_id text not null,
    slot int not null,
    job_ids bigint[] not null default '{}',
    attempts int[] not null default '{}',
    opened_at timestamptz not null default now(),
    primary key (node_id, slot)
) with (fillfactor = 50);

-- @down
drop table forge_claim_slots;
