-- A claim window's slot row holds its jobs' ids and attempts: past about 2 kB (some 170 jobs)
-- Postgres compressed it on every write, one pglz pass per window on the drain's hot path, for
-- a row that is overwritten a few milliseconds later. Rows up to a page are now stored as they
-- are; a larger one (a queue of very high concurrency) is still compressed or moved out of line.

-- @up
alter table forge_claim_slots set (toast_tuple_target = 8160);

-- @down
alter table forge_claim_slots reset (toast_tuple_target);
