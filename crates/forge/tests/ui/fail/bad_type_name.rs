use forge::prelude::*;

#[forge::job(type_name = "send welcome")]
async fn send_welcome(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

fn main() {}
