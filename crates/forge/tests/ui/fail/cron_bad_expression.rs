use forge::prelude::*;

#[forge::cron("61 * * * *")]
async fn tick(_ctx: &CronContext) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
