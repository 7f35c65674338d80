//! The sign-up workflow and the functions around it.
//!
//! `register` (a mutation) creates the run in its own transaction, keyed by the e-mail address,
//! so registering twice starts one run. The run opens a pending account (a tx_step: exactly
//! once), mails a confirmation link, and waits up to three days for `confirm_email` (another
//! mutation, which sends the run its event). Confirmed, it provisions a workspace and activates
//! the account. Not confirmed in time, the run fails and its compensations close the account.
//! A failure while provisioning undoes the workspace and the account, newest first.

use std::time::Duration;

use forge::prelude::*;
use forge::workflows::{self, StartOptions};
use serde::{Deserialize, Serialize};

/// How long a new account may stay unconfirmed.
pub const CONFIRMATION_WINDOW: Duration = Duration::from_secs(3 * 86_400);

/// A sign-up: who registers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewUser {
    /// Their e-mail address (the run's key).
    pub email: String,
    /// The workspace to provision for them.
    pub workspace: String,
}

/// What the confirmation carries.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Confirmation {
    /// Where the link was opened from.
    pub from_ip: String,
}

/// An activated account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Its id.
    pub id: i64,
    /// Its workspace.
    pub workspace: String,
}

/// The sign-up, from registration to an active account (or a closed one).
#[forge::workflow(version = 1, timeout = "4d")]
pub async fn sign_up(ctx: &WorkflowContext, user: NewUser) -> Result<Account, WorkflowError> {
    let email = user.email.clone();
    let account_id: i64 = ctx
        .tx_step("open_account", |mut tx| {
            let email = email.clone();
            async move {
                let id: i64 = forge::sqlx::query_scalar("insert into accounts (email) values ($1) returning id")
                    .bind(&email)
                    .fetch_one(&mut tx)
                    .await?;
                Ok(id)
            }
        })
        .compensate({
            let db = ctx.db().clone();
            move |id: i64| async move {
                forge::sqlx::query("update accounts set status = 'closed' where id = $1").bind(id).execute(&db).await?;
                Ok(())
            }
        })
        .await?;

    ctx.step("send_confirmation", || async {
        // A real app calls its mail service here (a step: at least once; the outbox would
        // deduplicate by run). This one writes the outbox.
        forge::sqlx::query("insert into outbox (email, subject) values ($1, 'Confirm your address')")
            .bind(&user.email)
            .execute(ctx.db())
            .await?;
        Ok(())
    })
    .await?;

    let confirmed: Option<Confirmation> = ctx.wait_for_event("email_confirmed", CONFIRMATION_WINDOW).await?;
    if confirmed.is_none() {
        return Err(WorkflowError::failed(format!("{} was not confirmed within 3 days", user.email)));
    }

    let workspace: String = ctx
        .tx_step("provision_workspace", |mut tx| {
            let name = user.workspace.clone();
            async move {
                if name.trim().is_empty() {
                    return Err(JobError::permanent("a workspace needs a name"));
                }
                forge::sqlx::query("insert into workspaces (account_id, name) values ($1, $2)")
                    .bind(account_id)
                    .bind(&name)
                    .execute(&mut tx)
                    .await?;
                Ok(name)
            }
        })
        .compensate({
            let db = ctx.db().clone();
            move |_name: String| async move {
                forge::sqlx::query("update workspaces set removed_at = now() where account_id = $1")
                    .bind(account_id)
                    .execute(&db)
                    .await?;
                Ok(())
            }
        })
        .await?;

    ctx.tx_step("activate", |mut tx| async move {
        forge::sqlx::query("update accounts set status = 'active' where id = $1")
            .bind(account_id)
            .execute(&mut tx)
            .await?;
        Ok(())
    })
    .await?;
    Ok(Account { id: account_id, workspace })
}

/// Registers a user: starts their sign-up (once per address) in this mutation's transaction.
#[forge::mutation(public)]
pub async fn register(ctx: &MutationContext, user: NewUser) -> Result<i64, ForgeError> {
    if !user.email.contains('@') {
        return Err(ForgeError::invalid_field("email", format!("{:?} is not an e-mail address", user.email)));
    }
    let key = format!("signup:{}", user.email);
    let mut tx = ctx.tx().await?;
    let run = SignUp::start_in(&mut tx, user, StartOptions::new().key(key))
        .await
        .map_err(|e| ForgeError::Internal(e.to_string()))?;
    Ok(run.0)
}

/// The confirmation link: sends the sign-up its event (only if this mutation commits).
#[forge::mutation(public)]
pub async fn confirm_email(ctx: &MutationContext, args: ConfirmArgs) -> Result<bool, ForgeError> {
    let mut tx = ctx.tx().await?;
    let sent = workflows::send_event_in(
        &mut tx,
        format!("signup:{}", args.email),
        "email_confirmed",
        Confirmation { from_ip: args.from_ip },
    )
    .await;
    match sent {
        Ok(workflows::EventSent::Delivered { .. }) => Ok(true),
        Ok(_) => Ok(false),
        Err(workflows::WorkflowsError::NotFound(_)) => {
            Err(ForgeError::NotFound("no sign-up for that address".to_owned()))
        }
        Err(workflows::WorkflowsError::Finished { .. }) => Err(ForgeError::Conflict("this sign-up is over".to_owned())),
        Err(e) => Err(ForgeError::Internal(e.to_string())),
    }
}

/// `confirm_email`'s arguments.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfirmArgs {
    /// The address confirmed.
    pub email: String,
    /// Where the link was opened from.
    pub from_ip: String,
}

/// An account's status.
#[forge::query(public)]
pub async fn account_status(ctx: &QueryContext, email: String) -> Result<Option<String>, ForgeError> {
    Ok(forge::sqlx::query_scalar("select status from accounts where email = $1")
        .bind(&email)
        .fetch_optional(ctx.db())
        .await?)
}
