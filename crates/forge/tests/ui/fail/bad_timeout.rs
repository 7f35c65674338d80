use forge::prelude::*;

#[forge::job(timeout = "soon")]
async fn job(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
