-- A span's attributes as `json`, not `jsonb`: every request and every job attempt writes a span,
-- and `jsonb` parses, sorts and re-encodes each object on the way in, for a column that is only
-- ever read back whole (the trace view) or by `->`/`->>`, which `json` answers too. The same
-- COPY of 100,000 request spans took 0.78–1.03 s into `json` against 1.03–1.48 s into `jsonb`.

-- @up
alter table forge_traces alter column attributes drop default;
alter table forge_traces alter column attributes type json using attributes::json;
alter table forge_traces alter column attributes set default '{}';

-- @down
alter table forge_traces alter column attributes drop default;
alter table forge_traces alter column attributes type jsonb using attributes::jsonb;
alter table forge_traces alter column attributes set default '{}';
