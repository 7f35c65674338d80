use forge::prelude::*;

#[forge::cron("0 3 * * *", every = "day")]
async fn tick(_ctx: &CronContext) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
