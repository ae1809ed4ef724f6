//! The `sealdb` command-line program.
fn main() {}
