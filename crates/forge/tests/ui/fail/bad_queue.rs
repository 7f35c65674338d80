use forge::prelude::*;

#[forge::job(queue = "no spaces")]
async fn job(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
