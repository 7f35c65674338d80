use forge::prelude::*;

#[forge::query(public, require_role("admin"))]
async fn stats(_ctx: &QueryContext, _args: ()) -> Result<(), ForgeError> {
    Ok(())
}

fn main() {}
