use forge::prelude::*;

#[forge::workflow(version = 0)]
async fn zero(_ctx: &WorkflowContext, _args: ()) -> Result<(), WorkflowError> {
    Ok(())
}

#[forge::workflow]
fn not_async(_ctx: &WorkflowContext, _args: ()) -> Result<(), WorkflowError> {
    Ok(())
}

fn main() {}
