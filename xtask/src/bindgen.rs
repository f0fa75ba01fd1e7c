//! `cargo xtask bindgen`: regenerates the committed Xen ABI bindings.

/// Regenerates `xen-core/sys/src/bindings.rs`.
pub fn run(_args: &[String]) -> Result<(), String> {
    Err("not implemented yet".into())
}
