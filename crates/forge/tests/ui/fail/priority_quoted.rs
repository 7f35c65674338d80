use forge::prelude::*;

#[forge::job(priority = "high")]
async fn job(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
