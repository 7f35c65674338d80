use forge::prelude::*;

#[derive(serde::Deserialize)]
struct Args {
    id: i64,
}

#[forge::query(public, cache = "30s", timeout = 10, rate_limit(requests = 10, per = "1m", key = "ip"))]
async fn get_one(_ctx: &QueryContext, args: Args) -> Result<i64, ForgeError> {
    Ok(args.id)
}

#[forge::query(name = "admin.stats", require_role("admin", "ops"), timeout = "500ms")]
async fn stats(_ctx: &QueryContext, _args: ()) -> Result<(), ForgeError> {
    Ok(())
}

#[forge::mutation(require_auth, rate_limit(requests = 5, key = "user"))]
async fn touch(_ctx: &MutationContext, args: Args) -> Result<i64, ForgeError> {
    Ok(args.id)
}

#[forge::action(require_role("admin"), rate_limit(requests = 1, per = "1s", key = "global"))]
async fn fetch(ctx: &ActionContext, _args: ()) -> Result<u16, ForgeError> {
    let _client = ctx.http();
    Ok(200)
}

fn main() {}
