//! The kernel crates' `unsafe` rule, checked here because Kbuild's `CLIPPY=1` is not part of the
//! module build: every `unsafe` block and `unsafe impl` in the kernel glue
//! (`xen-core/kernel/src`, `linux/src`, `drivers/*/kmod`) has a `// SAFETY:` comment on the statement it
//! belongs to (the comment lines right above it, or at the end of its own line), as clippy's
//! `undocumented_unsafe_blocks` requires of the host crates.

use crate::root;
use std::path::{Path, PathBuf};

/// Lines (1-based) of `src` holding an `unsafe` block or impl with no `// SAFETY:` comment.
pub fn undocumented(src: &str) -> Vec<usize> {
    let lines: Vec<&str> = src.lines().collect();
    let mut bad = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        if !(has_unsafe_block(code) || code.contains("unsafe impl")) {
            continue;
        }
        if line.contains("// SAFETY:") || documented_above(&lines, i) {
            continue;
        }
        bad.push(i + 1);
    }
    bad
}

/// `unsafe {` (a block), not `unsafe fn`, `unsafe extern` or `unsafe impl`.
fn has_unsafe_block(code: &str) -> bool {
    code.match_indices("unsafe").any(|(at, _)| {
        let before_ok = at == 0
            || !code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
        before_ok && code[at + "unsafe".len()..].trim_start().starts_with('{')
    })
}

/// Walks up from line `i` over the rest of its statement (lines that do not end one) to the
/// comment block right above the statement, and looks for `SAFETY:` in it.
fn documented_above(lines: &[&str], i: usize) -> bool {
    let mut j = i;
    // The statement's earlier lines: a line ending in `;`, `{` or `}` ends the one before.
    while j > 0 {
        let prev = lines[j - 1].trim();
        if prev.starts_with("//") {
            break;
        }
        if prev.contains("// SAFETY:") {
            return true;
        }
        if prev.is_empty() || prev.ends_with(';') || prev.ends_with('{') || prev.ends_with('}') {
            return false;
        }
        j -= 1;
    }
    while j > 0 {
        let prev = lines[j - 1].trim();
        if !prev.starts_with("//") {
            return false;
        }
        if prev.contains("SAFETY:") {
            return true;
        }
        j -= 1;
    }
    false
}

fn kernel_sources() -> Vec<PathBuf> {
    let mut dirs = vec![root().join("xen-core/kernel/src"), root().join("linux/src")];
    if let Ok(rd) = std::fs::read_dir(root().join("drivers")) {
        for e in rd.flatten() {
            let kmod = e.path().join("kmod");
            if kmod.is_dir() {
                dirs.push(kmod);
            }
        }
    }
    let mut files = Vec::new();
    for d in dirs {
        collect_rs(&d, &mut files);
    }
    files.sort();
    files
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Fails with every undocumented `unsafe` of the kernel crates.
pub fn check() -> Result<(), String> {
    let mut report = String::new();
    let files = kernel_sources();
    for f in &files {
        let src = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        for line in undocumented(&src) {
            report.push_str(&format!(
                "{}:{line}: unsafe without a `// SAFETY:` comment\n",
                f.strip_prefix(root()).unwrap_or(f).display()
            ));
        }
    }
    if report.is_empty() {
        eprintln!(
            "xtask: every unsafe block and impl in {} kernel-crate files has a SAFETY comment",
            files.len()
        );
        Ok(())
    } else {
        Err(report)
    }
}

#[cfg(test)]
mod tests {
    use super::undocumented;

    #[test]
    fn documented_blocks_pass() {
        let src = "\
fn f() {
    // SAFETY: a reason.
    unsafe { g() };
    // SAFETY: a reason
    // over two lines.
    let x = unsafe {
        h()
    };
    let y = // SAFETY: on the line.
        unsafe { h() };
    // SAFETY: the call's first line carries it.
    let z = foo(
        a,
        unsafe { h() },
    );
}
// SAFETY: an impl.
unsafe impl Send for T {}
unsafe fn not_a_block() {}
unsafe extern \"C\" fn also_not() {}
";
        assert_eq!(undocumented(src), Vec::<usize>::new());
    }

    #[test]
    fn undocumented_blocks_are_found() {
        let src = "\
fn f() {
    let a = 1;
    unsafe { g() };
    // A comment that says nothing about safety.
    let x = unsafe { h() };
}
unsafe impl Sync for T {}
";
        assert_eq!(undocumented(src), vec![3, 5, 7]);
    }
}
