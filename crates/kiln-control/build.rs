//! Rebuilds the dashboard when a migration changes: `sqlx::migrate!` embeds them at compile time, and
//! cargo does not otherwise notice files outside the crate.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
