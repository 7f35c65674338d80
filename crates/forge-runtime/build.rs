//! Rebuilds the crate when a file is added to Forge's `migrations/` folder: they are embedded
//! (`db::migrations`), and an embedded folder is otherwise only watched for changes to the
//! files it held at the last build.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
