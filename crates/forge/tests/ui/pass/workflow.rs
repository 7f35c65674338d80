use std::time::Duration;

use forge::prelude::*;

#[forge::workflow(
    name = "billing.sign_up",
    type_name = "SignUpFlow",
    version = 3,
    queue = "workflows",
    priority = high,
    timeout = "7d",
    execution_timeout = "2m",
    max_attempts = 10,
    worker_capability = "billing"
)]
async fn sign_up(ctx: &WorkflowContext, email: String) -> Result<String, WorkflowError> {
    ctx.sleep(Duration::from_secs(1)).await?;
    Ok(email)
}

#[forge::workflow]
async fn plain(_ctx: &WorkflowContext, _args: ()) -> Result<(), WorkflowError> {
    Ok(())
}

fn main() {
    assert_eq!(<SignUpFlow as Job>::NAME, "billing.sign_up");
    assert_eq!(<SignUpFlow as Workflow>::VERSION, 3);
    assert_eq!(SignUpFlow::timeout(), Some(Duration::from_secs(7 * 86_400)));
    let options = <SignUpFlow as Job>::options();
    assert_eq!(options.queue, "workflows");
    assert_eq!(options.timeout, Duration::from_secs(120));
    assert_eq!(options.max_attempts, 10);
    assert_eq!(<Plain as Workflow>::VERSION, 1);
    assert_eq!(Plain::timeout(), None);
}
