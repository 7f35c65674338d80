use forge::prelude::*;

#[forge::cron("0 3 * * *", timezone = "Europe/Paris", catch_up, catch_up_limit = 5, overlap = "allow", name = "nightly")]
async fn nightly_report(ctx: &CronContext) -> Result<(), JobError> {
    let _ = (ctx.scheduled_time(), ctx.is_catch_up(), ctx.delay(), ctx.is_late());
    Ok(())
}

#[forge::cron("*/10 * * * * *", queue = "ticks", max_attempts = 1, timeout = "5s")]
async fn every_ten_seconds(_ctx: &CronContext) -> Result<(), JobError> {
    Ok(())
}

fn main() {
    assert_eq!(NightlyReport::NAME, "cron:nightly");
    assert_eq!(EveryTenSeconds::options().queue, "ticks");
    assert_eq!(EveryTenSeconds::options().max_attempts, 1);
}
