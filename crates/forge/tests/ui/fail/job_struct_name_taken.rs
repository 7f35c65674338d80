use forge::prelude::*;

/// The application's own type, named as the job's struct would be.
pub struct SendWelcome {
    pub email: String,
}

#[forge::job]
async fn send_welcome(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
