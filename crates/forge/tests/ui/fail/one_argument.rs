use forge::prelude::*;

#[forge::job]
async fn job(_ctx: &JobContext) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
