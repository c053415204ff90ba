//! The rule table and the test programs prove each other: every rule matches its own
//! architecture's test program and no other, agrees with the files Debian's
//! qemu-user-static installs, and the committed binaries are the ones SHA256SUMS names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::RunExt;

use std::{collections::BTreeMap, path::Path, process::Command};

use archctl::{arch::Table, testprog};
use sha2::{Digest, Sha256};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Rules that deliberately differ from QEMU 7.2 (see binfmt-rules/qemu.toml).
const DEVIATIONS: &[&str] = &["microblaze", "microblazeel"];

#[test]
fn every_rule_has_a_test_program_and_every_program_a_rule() {
    let t = Table::builtin();
    for r in t.rules() {
        assert!(
            testprog::program(&r.name).is_some(),
            "no test program for rule {}",
            r.name
        );
    }
    for p in testprog::all() {
        assert!(
            t.get(p.arch).is_some(),
            "test program {} has no rule",
            p.arch
        );
    }
}

#[test]
fn cross_match_matrix() {
    let t = Table::builtin();
    let mut wrong = Vec::new();
    for r in t.rules() {
        for p in testprog::all() {
            let should = p.arch == r.name;
            if r.matches(p.bytes) != should {
                wrong.push(format!(
                    "rule {} {} program {}",
                    r.name,
                    if should { "does not match" } else { "matches" },
                    p.arch
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "cross-match failures:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn pitfalls_are_told_apart() {
    let t = Table::builtin();
    let prog = |a: &str| testprog::program(a).unwrap().bytes;
    // mips o32 vs n32 differ only in e_flags (EF_MIPS_ABI2).
    assert!(t.get("mips").unwrap().matches(prog("mips")));
    assert!(!t.get("mips").unwrap().matches(prog("mipsn32")));
    assert!(!t.get("mipsel").unwrap().matches(prog("mipsn32el")));
    // riscv32 vs riscv64 only in the ELF class.
    assert!(!t.get("riscv64").unwrap().matches(prog("riscv32")));
    // Endianness.
    assert!(!t.get("arm").unwrap().matches(prog("armeb")));
    assert!(!t.get("ppc64le").unwrap().matches(prog("ppc64")));
    assert!(!t.get("mips64el").unwrap().matches(prog("mips64")));
    // OS/ABI byte (7) is masked: a GNU/Linux (3) binary still matches.
    for r in t.rules() {
        let mut h = prog(&r.name).to_vec();
        h[7] = 3;
        assert!(r.matches(&h), "{}: OS/ABI 3 not matched", r.name);
    }
}

/// Parse `/usr/lib/binfmt.d/qemu-*.conf` lines: `:name:type:offset:magic:mask:interp:flags`.
/// Target name -> (magic, mask).
type MagicTable = BTreeMap<String, (Vec<u8>, Vec<u8>)>;

fn debian_rules() -> Option<MagicTable> {
    let dir = Path::new("/usr/lib/binfmt.d");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).ok()? {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let Some(arch) = name
            .strip_prefix("qemu-")
            .and_then(|n| n.strip_suffix(".conf"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(e.path()).unwrap();
        let line = text.lines().find(|l| l.starts_with(':')).unwrap();
        let f: Vec<&str> = line.split(':').collect();
        let magic = archctl::arch::parse_escaped(f[4]).unwrap();
        let mask = archctl::arch::parse_escaped(f[5]).unwrap();
        out.insert(arch.to_string(), (magic, mask));
    }
    (!out.is_empty()).then_some(out)
}

#[test]
fn rules_match_debian_binfmt_d() {
    let deb = debian_rules();
    skip_unless!(
        deb.is_some(),
        "qemu-user-static's /usr/lib/binfmt.d/qemu-*.conf files are not installed"
    );
    let deb = deb.unwrap();
    let t = Table::builtin();
    assert!(deb.len() >= 25, "only {} Debian rules", deb.len());
    for (arch, (magic, mask)) in &deb {
        let r = t
            .get(arch)
            .unwrap_or_else(|| panic!("Debian has {arch}, the table does not"));
        if DEVIATIONS.contains(&arch.as_str()) {
            assert_ne!(
                &r.magic, magic,
                "{arch} is listed as a deviation but matches"
            );
            continue;
        }
        assert_eq!(&r.magic, magic, "{arch}: magic differs from Debian's");
        assert_eq!(&r.mask, mask, "{arch}: mask differs from Debian's");
    }
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn sha256sums_match_committed_and_embedded_programs() {
    let root = Path::new(ROOT).join("test-images");
    let sums = std::fs::read_to_string(root.join("SHA256SUMS")).unwrap();
    let mut listed = Vec::new();
    let mut probes = 0;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (hash, path) = line.split_once("  ").expect("sha256sum format");
        let bytes = std::fs::read(root.join(path)).unwrap();
        assert_eq!(sha256_hex(&bytes), hash, "{path}: checksum mismatch");
        // The probes (probe/<name>) are embedded by src/cpu.rs, not as test programs.
        if let Some(probe) = path.strip_prefix("probe/") {
            assert_eq!(probe, "x86_64-level", "unknown probe {path}");
            assert_eq!(
                archctl::cpu::X86_64_LEVEL_PROBE,
                &bytes[..],
                "{path}: embedded copy differs"
            );
            probes += 1;
            continue;
        }
        let arch = path.strip_prefix("bin/").unwrap();
        let embedded = testprog::program(arch).unwrap_or_else(|| panic!("{arch} not embedded"));
        assert_eq!(embedded.bytes, &bytes[..], "{arch}: embedded copy differs");
        listed.push(arch.to_string());
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(root.join("bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    listed.sort();
    assert_eq!(listed, on_disk, "SHA256SUMS does not list exactly bin/*");
    let in_probe_dir = std::fs::read_dir(root.join("probe")).unwrap().count();
    assert_eq!(
        probes, in_probe_dir,
        "SHA256SUMS does not list exactly probe/*"
    );
}

#[test]
fn test_programs_run_under_their_emulator() {
    let missing: Vec<_> = testprog::all()
        .filter(|p| !Path::new(&emulator_for(p.arch)).exists())
        .map(|p| p.arch)
        .collect();
    skip_unless!(
        missing.is_empty(),
        "no qemu-*-static (qemu-user-static) for {missing:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let failures: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = testprog::all()
            .map(|p| {
                let dir = dir.path();
                s.spawn(move || {
                    let f = dir.join(p.arch);
                    std::fs::write(&f, p.bytes).unwrap();
                    std::fs::set_permissions(
                        &f,
                        std::os::unix::fs::PermissionsExt::from_mode(0o755),
                    )
                    .unwrap();
                    let out = Command::new(emulator_for(p.arch)).arg(&f).run();
                    let got = String::from_utf8_lossy(&out.stdout);
                    (out.status.success() && got == p.expected_output())
                        .then_some(())
                        .ok_or(format!("{}: {:?} {got:?}", p.arch, out.status))
                })
            })
            .collect();
        hs.into_iter()
            .filter_map(|h| h.join().unwrap().err())
            .collect()
    });
    assert!(failures.is_empty(), "{failures:#?}");
}

fn emulator_for(arch: &str) -> String {
    let t = Table::builtin();
    format!("/usr/bin/qemu-{}-static", t.get(arch).unwrap().emulator)
}
