use forge::prelude::*;

#[forge::job(retries = 3)]
async fn job(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
