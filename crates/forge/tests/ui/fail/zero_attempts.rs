use forge::prelude::*;

#[forge::job(max_attempts = 0)]
async fn job(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
