//! Build-time work, so that start-up (on the boot path) parses nothing:
//! - decodes and validates `binfmt-rules/qemu.toml` into static data (`rules.rs`);
//! - embeds every test program in `test-images/bin/` (`testprogs.rs`), so that
//!   `archctl test` and verification need no files at run time.
// A build script has no user input: failing loudly on a broken build environment is right.
#![allow(clippy::expect_used)]

#[path = "src/rules_data.rs"]
#[allow(dead_code)]
mod rules_data;

use std::{env, fmt::Write, fs, path::PathBuf};

fn main() {
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("rules.rs"), rules_source(&root)).expect("write rules.rs");
    fs::write(out.join("testprogs.rs"), testprogs_source(&root)).expect("write testprogs.rs");
}

fn rules_source(root: &std::path::Path) -> String {
    let path = root.join("binfmt-rules").join("qemu.toml");
    println!("cargo:rerun-if-changed={}", path.display());
    println!("cargo:rerun-if-changed=src/rules_data.rs");
    let text = fs::read_to_string(&path).expect("read binfmt-rules/qemu.toml");
    let rules = match rules_data::parse_table(&text) {
        Ok(r) => r,
        Err(e) => panic!("binfmt-rules/qemu.toml: {e}"),
    };
    let mut src = String::from("pub static RULES: &[StaticRule] = &[\n");
    for r in rules {
        let _ = writeln!(
            src,
            "    StaticRule {{ name: {:?}, family: {:?}, aliases: &{:?}, platforms: &{:?}, emulator: {:?}, offset: {}, magic: &{:?}, mask: &{:?}, legacy_machines: &{:?} }},",
            r.name,
            r.family,
            r.aliases,
            r.platforms,
            r.emulator,
            r.offset,
            r.magic,
            r.mask,
            r.legacy_machines
        );
    }
    src.push_str("];\n");
    src
}

fn testprogs_source(root: &std::path::Path) -> String {
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
        let _ = writeln!(
            src,
            "    ({n:?}, include_bytes!({:?})),",
            p.display().to_string()
        );
    }
    src.push_str("];\n");
    src
}
