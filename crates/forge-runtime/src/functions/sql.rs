//! The functions component's SQL: rate-limit buckets.

/// Takes a token from bucket `$1` (capacity `$2`, refilled at `$3` tokens a second), creating it
/// full. One atomic upsert: `allowed` says whether a token was taken, `tokens` what is left.
pub(crate) const TAKE_TOKEN: &str = r"
insert into forge_rate_limits as b (key, tokens, allowed, updated_at)
values ($1, $2::float8 - 1, true, clock_timestamp())
on conflict (key) do update set
    tokens = case
        when least($2::float8, b.tokens + extract(epoch from clock_timestamp() - b.updated_at)::float8 * $3::float8) >= 1
        then least($2::float8, b.tokens + extract(epoch from clock_timestamp() - b.updated_at)::float8 * $3::float8) - 1
        else least($2::float8, b.tokens + extract(epoch from clock_timestamp() - b.updated_at)::float8 * $3::float8)
    end,
    allowed = least($2::float8, b.tokens + extract(epoch from clock_timestamp() - b.updated_at)::float8 * $3::float8) >= 1,
    updated_at = clock_timestamp()
returning allowed, tokens
";

/// Deletes buckets untouched for `$1` seconds (they would be full again anyway).
pub(crate) const PRUNE_BUCKETS: &str = r"
delete from forge_rate_limits where updated_at < now() - make_interval(secs => $1)
";
