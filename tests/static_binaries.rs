//! The release binaries (guest-installer/build-static.sh, run by .ci/run before the
//! tests): static musl ELFs for x86_64 and aarch64 that run — the foreign one under
//! qemu-user-static.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::RunExt;

use std::path::PathBuf;

use support::{Sandbox, assert_code, stdout};

/// Where build-static.sh puts the release binary for `arch`.
fn binary(arch: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/static/archctl-{arch}"))
}

const NOT_BUILT: &str = "not built (bash guest-installer/build-static.sh)";

#[test]
fn both_release_binaries_are_static_elfs_of_their_architecture() {
    for (arch, machine) in [("x86_64", "X86_64"), ("aarch64", "ARM_AARCH64")] {
        let p = binary(arch);
        skip_unless!(p.exists(), "{} {NOT_BUILT}", p.display());
        let info = archctl::elf::ElfInfo::read(&p).unwrap();
        assert!(info.is_static(), "{arch}: {}", info.describe());
        assert_eq!(info.bits, 64);
        assert!(
            info.machine.contains(machine) || info.machine.contains(&machine.replace("ARM_", "")),
            "{arch}: {}",
            info.machine
        );
        let size = std::fs::metadata(&p).unwrap().len();
        assert!(size < 20 << 20, "{arch}: {size} bytes");
    }
}

#[test]
fn the_aarch64_binary_runs_under_qemu_in_a_private_instance() {
    require_sandbox!();
    let p = binary("aarch64");
    skip_unless!(p.exists(), "{} {NOT_BUILT}", p.display());
    let qemu = "/usr/bin/qemu-aarch64-static";
    let out = std::process::Command::new(qemu)
        .arg(&p)
        .arg("--version")
        .run();
    assert_code(&out, 0);
    assert!(stdout(&out).starts_with("archctl "), "{}", stdout(&out));
    let sb = Sandbox::new();
    let out = sb
        .command(qemu)
        .arg(&p)
        .arg("--binfmt-dir")
        .arg(&sb.dir)
        .args(["status", "--json"])
        .env("ARCHCTL_RUNTIME_DIR", sb.runtime_dir())
        .run();
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["host"]["arch"], "aarch64",
        "qemu reports the emulated machine: {v}"
    );
    assert!(
        v["binfmt_misc"]["path"]
            .as_str()
            .unwrap()
            .ends_with("binfmt_misc")
    );
}
