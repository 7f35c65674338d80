use forge::prelude::*;

#[forge::job(backoff(exponential, jitter = 1.5))]
async fn job(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
