use forge::prelude::*;

#[forge::cron("* * * * MON-")]
async fn tick(_ctx: &CronContext) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
