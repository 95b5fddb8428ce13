//! The `watershed` binary.

fn main() {}
