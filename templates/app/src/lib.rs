//! {{name}}: a Forge application. Its code lives in this library, so tests `use {{crate}}::…`;
//! `src/main.rs` is the thin binary that runs it.
//!
//! Functions, jobs and crons register themselves wherever they are declared: add a module
//! below for each feature.

pub mod signups;

use forge::prelude::*;

/// The application's node, ready to build from its configuration. `main.rs` runs it; a test can
/// start it with `app(db.config()).build()?.start().await?`. Hooks that concern the whole app
/// (authentication, extra routes) go here.
pub fn app(config: ForgeConfig) -> ForgeBuilder {
    Forge::builder().config(config)
}
