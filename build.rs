//! Embeds every test program in `test-images/bin/` (one file per QEMU target) so that
//! `archctl test` and verification need no files at run time.
// A build script has no user input: failing loudly on a broken build environment is right.
#![allow(clippy::expect_used)]

use std::{env, fs, path::PathBuf};

fn main() {
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let bin = root.join("test-images").join("bin");
    println!("cargo:rerun-if-changed={}", bin.display());
    let mut names: Vec<String> = fs::read_dir(&bin)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut src = String::from("pub static PROGRAMS: &[(&str, &[u8])] = &[\n");
    for n in &names {
        let p = bin.join(n);
        println!("cargo:rerun-if-changed={}", p.display());
        src.push_str(&format!(
            "    ({n:?}, include_bytes!({:?})),\n",
            p.display().to_string()
        ));
    }
    src.push_str("];\n");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("testprogs.rs");
    fs::write(out, src).expect("write testprogs.rs");
}
