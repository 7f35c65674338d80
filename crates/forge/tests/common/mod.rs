//! What the function tests share: a `notes` table, a mutation that writes to it and dispatches a
//! job, and that job.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use forge::prelude::*;
use forge::testing::TestDatabase;
use serde::{Deserialize, Serialize};

/// The `notes` table the functions write to.
pub const NOTES_TABLE: &str =
    "create table notes (id bigint generated always as identity primary key, body text not null)";

/// A fresh database with the `notes` table.
pub async fn notes_database() -> TestDatabase {
    let db = TestDatabase::new().await.expect("db");
    sqlx::query(NOTES_TABLE).execute(db.pool()).await.expect("table");
    db
}

/// A note.
#[derive(Debug, Serialize, Deserialize)]
pub struct Note {
    pub body: String,
}

#[forge::job]
pub async fn index_note(_ctx: &JobContext, _args: Note) -> Result<(), JobError> {
    Ok(())
}

/// Writes a note and dispatches its indexing job; refuses empty notes after both.
#[forge::mutation(public)]
pub async fn create_note(ctx: &MutationContext, args: Note) -> Result<i64, ForgeError> {
    let id: i64 = sqlx::query_scalar("insert into notes (body) values ($1) returning id")
        .bind(&args.body)
        .fetch_one(&mut ctx.tx().await?)
        .await?;
    ctx.dispatch::<IndexNote>(Note { body: args.body.clone() }).await?;
    if args.body.trim().is_empty() {
        return Err(ForgeError::invalid_field("body", "must not be empty"));
    }
    Ok(id)
}
