use forge::prelude::*;

/// The application's own type, named as the job's struct would be: `type_name` renames the
/// generated struct instead.
pub struct SendWelcome {
    pub email: String,
}

#[forge::job(type_name = "SendWelcomeJob")]
async fn send_welcome(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

#[forge::cron("0 8 * * *", type_name = "MorningTick")]
async fn morning(_ctx: &CronContext) -> Result<(), JobError> {
    Ok(())
}

mod inner {
    use forge::prelude::*;

    /// A private job in a module, used from the parent through its path.
    #[forge::job]
    pub(super) async fn tidy(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {
    let _mine = SendWelcome { email: "ada@example.com".to_owned() };
    assert_eq!(SendWelcomeJob::NAME, "send_welcome");
    assert_eq!(MorningTick::NAME, "cron:morning");
    assert_eq!(inner::Tidy::NAME, "tidy");
}
