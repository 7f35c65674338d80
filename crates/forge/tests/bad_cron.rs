//! A cron registered by hand with a bad expression stops the node at start-up, naming the cron.

use forge::cron::{CronRegistration, Overlap};
use forge::jobs::JobOptions;
use forge::prelude::*;

forge::__private::inventory::submit! {
    CronRegistration {
        name: "broken_report",
        expression: "61 * * * *",
        timezone: "UTC",
        catch_up: false,
        catch_up_limit: 1,
        overlap: Overlap::Skip,
        job_kind: "cron:broken_report",
        job_options: JobOptions::new,
    }
}

#[test]
fn a_bad_cron_expression_fails_at_start_up_with_the_crons_name() {
    let err = Forge::builder().config(ForgeConfig::default()).build().expect_err("refused");
    let message = err.to_string();
    assert!(message.contains("broken_report"), "{message}");
    assert!(message.contains("61 * * * *"), "{message}");
    // A node that does not schedule crons is unaffected.
    Forge::builder().config(ForgeConfig::default()).crons(false).build().expect("no crons, no error");
}
