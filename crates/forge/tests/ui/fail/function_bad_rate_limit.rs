use forge::prelude::*;

#[forge::query(public, rate_limit(requests = 10, key = "session"))]
async fn a(_ctx: &QueryContext, _args: ()) -> Result<(), ForgeError> {
    Ok(())
}

#[forge::query(public, rate_limit(per = "1m"))]
async fn b(_ctx: &QueryContext, _args: ()) -> Result<(), ForgeError> {
    Ok(())
}

fn main() {}
