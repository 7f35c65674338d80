use forge::prelude::*;

#[forge::job]
fn job(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
