use forge::prelude::*;

#[forge::cron("0 3 * * *", timezone = "Mars/Olympus_Mons")]
async fn tick(_ctx: &CronContext) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
