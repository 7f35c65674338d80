use forge::prelude::*;

#[forge::cron("0 8 * * *")]
async fn morning(_ctx: &CronContext) -> Result<(), JobError> {
    Ok(())
}

#[forge::cron("61 * * * *")]
async fn tick(_ctx: &CronContext) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
