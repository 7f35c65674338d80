use forge::prelude::*;

#[forge::workflow(unique)]
async fn flow(_ctx: &WorkflowContext, _args: ()) -> Result<(), WorkflowError> {
    Ok(())
}

fn main() {}
