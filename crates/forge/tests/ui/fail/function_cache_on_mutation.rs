use forge::prelude::*;

#[forge::mutation(cache = "30s")]
async fn touch(_ctx: &MutationContext, _args: ()) -> Result<(), ForgeError> {
    Ok(())
}

fn main() {}
