use forge::prelude::*;

#[forge::job]
async fn job(_ctx: &JobContext, _args: ()) -> u32 {
    1
}

fn main() {}
