//! [`Pauses`]: a table of things an operator can pause (queues, crons), one row per name with
//! `paused_at` and `paused_by`. The statements have one shape whatever the table; each
//! component declares its table with `pauses!` in its own `sql.rs`.

use sqlx::PgPool;

/// The pause and resume statements of one table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pauses {
    /// Pauses `$1` (by `$2`), keeping the first pause's time and author.
    pub(crate) pause: &'static str,
    /// Resumes `$1`; returns it if it was paused.
    pub(crate) resume: &'static str,
}

/// The [`Pauses`] of table `$table`, keyed by column `$key`.
macro_rules! pauses {
    ($table:literal, $key:literal) => {
        $crate::db::Pauses {
            pause: concat!(
                "insert into ",
                $table,
                " (",
                $key,
                ", paused_at, paused_by) values ($1, now(), $2) ",
                "on conflict (",
                $key,
                ") do update set ",
                "paused_at = coalesce(",
                $table,
                ".paused_at, now()), ",
                "paused_by = coalesce(",
                $table,
                ".paused_by, excluded.paused_by)"
            ),
            resume: concat!(
                "update ",
                $table,
                " set paused_at = null, paused_by = null ",
                "where ",
                $key,
                " = $1 and paused_at is not null returning ",
                $key
            ),
        }
    };
}

pub(crate) use pauses;

impl Pauses {
    /// Pauses `name`; pausing what is paused changes nothing.
    pub(crate) async fn pause(&self, pool: &PgPool, name: &str, by: &str) -> Result<(), sqlx::Error> {
        sqlx::query(self.pause).bind(name).bind(by).execute(pool).await?;
        Ok(())
    }

    /// Resumes `name`; answers whether it was paused.
    pub(crate) async fn resume(&self, pool: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
        let resumed: Option<String> = sqlx::query_scalar(self.resume).bind(name).fetch_optional(pool).await?;
        Ok(resumed.is_some())
    }
}
