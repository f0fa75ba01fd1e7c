//! `cargo xtask bench`: benchmarks that print a ratio against a peer measured in the same run.

/// Dispatches `cargo xtask bench WHAT`.
pub fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some(other) => Err(format!("unknown benchmark `{other}`")),
        None => Err("usage: cargo xtask bench ring".into()),
    }
}
