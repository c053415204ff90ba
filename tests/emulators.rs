//! `archctl emulators list|pack|install`: bundles packed from Debian's
//! qemu-user-static, installed from files and from a local HTTP server, and every way a
//! bundle can be bad leaving the destination untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::RunExt;

use std::{path::Path, process::Command, sync::OnceLock};

use support::{ARCHCTL, FakeServer, Sandbox, assert_code, assert_error_line, stdout};

const FOREIGN: &str = if cfg!(target_arch = "aarch64") {
    "riscv64"
} else {
    "aarch64"
};

fn archctl(args: &[&str]) -> support::Run {
    Command::new(ARCHCTL).args(args).run()
}

fn sha256_file(p: &Path) -> String {
    support::registry::sha256_hex(&std::fs::read(p).unwrap())
}

type Packed = (tempfile::TempDir, std::path::PathBuf, String);

/// A bundle of the emulators of `archs`, packed by archctl: its directory, file and
/// sha256, checked against what `pack --json` reports.
fn pack(archs: &[&str]) -> Packed {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("emulators.tar.gz");
    let mut args = vec!["--json", "emulators", "pack"];
    args.extend(archs);
    args.extend(["--output", file.to_str().unwrap()]);
    let out = archctl(&args);
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sha = sha256_file(&file);
    assert_eq!(
        v["sha256"],
        sha.as_str(),
        "pack reports the bundle's sha256"
    );
    let mut names: Vec<String> = archs.iter().map(|a| format!("qemu-{a}-static")).collect();
    names.sort();
    assert_eq!(v["emulators"], serde_json::json!(names));
    (dir, file, sha)
}

/// `archctl emulators install --from FILE --sha256 SHA --dest DEST`.
fn install_file(file: &Path, sha: &str, dest: &Path) -> support::Run {
    archctl(&[
        "emulators",
        "install",
        "--from",
        file.to_str().unwrap(),
        "--sha256",
        sha,
        "--dest",
        dest.to_str().unwrap(),
    ])
}

/// One bundle of the FOREIGN emulator, shared by the tests.
fn bundle() -> &'static Packed {
    static B: OnceLock<Packed> = OnceLock::new();
    B.get_or_init(|| pack(&[FOREIGN]))
}

/// A tar.gz with the given (name, type, bytes) entries.
fn tarball(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        if *kind == tar::EntryType::Symlink {
            h.set_link_name("/usr/bin/qemu-aarch64-static").unwrap();
            h.set_size(0);
        }
        // Bypass the tar crate's own path checks: set the raw name.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        b.append(
            &h,
            if *kind == tar::EntryType::Symlink {
                &[][..]
            } else {
                *data
            },
        )
        .unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn list_shows_installed_emulators() {
    let out = archctl(&["--json", "emulators", "list"]);
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["arch"] == FOREIGN)
        .unwrap();
    assert_eq!(e["static"], true, "{e}");
    assert_eq!(e["usable_with_f"], true);
    assert!(e["version"].as_str().unwrap().contains("version"), "{e}");
}

#[test]
fn install_from_a_file_then_enable_uses_it() {
    require_sandbox!();
    let (_d, file, sha) = bundle();
    let dest = tempfile::tempdir().unwrap();
    let dest = dest.path().join("emulators");
    let out = install_file(file, sha, &dest);
    assert_code(&out, 0);
    let installed = dest.join(format!("qemu-{FOREIGN}-static"));
    assert!(installed.is_file());
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(format!("/usr/bin/qemu-{FOREIGN}-static")).unwrap()
    );
    let names: Vec<_> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no staging left behind: {names:?}");
    // The installed emulator registers and runs.
    let sb = Sandbox::new();
    let (out, v) = sb.archctl_json(&["enable", FOREIGN, "--emulator-dir", dest.to_str().unwrap()]);
    assert_code(&out, 0);
    assert_eq!(v["entries"][0]["interpreter"], installed.to_str().unwrap());
    assert_eq!(v["entries"][0]["verified"], true);
}

#[test]
fn install_over_http_and_every_bad_bundle_changes_nothing() {
    let (_d, file, sha) = bundle();
    let good = std::fs::read(file).unwrap();
    let dynamic = tarball(&[(
        &format!("qemu-{FOREIGN}-static"),
        tar::EntryType::Regular,
        &std::fs::read("/bin/true").unwrap(),
    )]);
    let traversal = tarball(&[("../evil", tar::EntryType::Regular, b"x")]);
    let link = tarball(&[("qemu-aarch64-static", tar::EntryType::Symlink, b"")]);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("/good.tar.gz", good.clone()),
        ("/dynamic.tar.gz", dynamic.clone()),
        ("/traversal.tar.gz", traversal.clone()),
        ("/link.tar.gz", link.clone()),
    ];
    let truncated_len = good.len();
    let srv = FakeServer::start(move |path, _| {
        if path == "/truncated.tar.gz" {
            // Declares the whole bundle, sends half of it.
            return (
                200,
                vec![("Content-Length".into(), truncated_len.to_string())],
                good[..good.len() / 2].to_vec(),
            );
        }
        match bodies.iter().find(|(p, _)| *p == path) {
            Some((_, b)) => (200, vec![], b.clone()),
            None => (404, vec![], b"not found".to_vec()),
        }
    });
    let url = |p: &str| format!("http://{}{p}", srv.addr);
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("emulators");
    let install = |from: &str, sha: &str| {
        archctl(&[
            "emulators",
            "install",
            "--from",
            from,
            "--sha256",
            sha,
            "--dest",
            dest.to_str().unwrap(),
            "--timeout",
            "10",
        ])
    };
    let sha_of = |b: &[u8]| support::registry::sha256_hex(b);
    let cases: Vec<(String, String, &str)> = vec![
        (url("/good.tar.gz"), "0".repeat(64), "checksum mismatch"),
        (url("/truncated.tar.gz"), sha.clone(), "truncated"),
        (
            url("/dynamic.tar.gz"),
            sha_of(&dynamic),
            "dynamically linked",
        ),
        (
            url("/traversal.tar.gz"),
            sha_of(&traversal),
            "not a plain file name",
        ),
        (url("/link.tar.gz"), sha_of(&link), "not a regular file"),
        (url("/missing.tar.gz"), sha.clone(), "404"),
        (
            format!(
                "http://127.0.0.1:{}/x.tar.gz",
                support::registry::free_port()
            ),
            sha.clone(),
            "download",
        ),
    ];
    for (from, sum, needle) in &cases {
        let out = install(from, sum);
        assert_code(&out, 1);
        assert_error_line(&out, needle);
        assert!(!dest.exists(), "{from}: destination left behind");
    }
    let out = install(&url("/good.tar.gz"), "xyz");
    assert_code(&out, 2);
    // The good one over HTTP.
    let out = install(&url("/good.tar.gz"), sha);
    assert_code(&out, 0);
    assert!(stdout(&out).contains(&format!("qemu-{FOREIGN}-static")));
    assert!(dest.join(format!("qemu-{FOREIGN}-static")).is_file());
}

/// A bundle of two emulators, FOREIGN's and s390x's.
fn bundle_of_two() -> &'static Packed {
    static B: OnceLock<Packed> = OnceLock::new();
    B.get_or_init(|| pack(&[FOREIGN, "s390x"]))
}

/// Every name in `dir` with its content (directories as `<dir>`), sorted.
fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let p = e.path();
            let body = if p.is_dir() {
                b"<dir>".to_vec()
            } else {
                std::fs::read(&p).unwrap()
            };
            (e.file_name().to_string_lossy().into_owned(), body)
        })
        .collect();
    v.sort();
    v
}

/// `chattr +i` on a file for as long as it lives, so renames over it fail (EPERM) as
/// on a read-only or failing file system.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(p: &Path) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(p)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Immutable(p.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn install_lands_every_file_or_none() {
    let (_d, file, sha) = bundle_of_two();
    let install = |dest: &Path| install_file(file, sha, dest);
    let mut names = [
        format!("qemu-{FOREIGN}-static"),
        "qemu-s390x-static".to_string(),
    ];
    names.sort();
    let (first, second) = (&names[0], &names[1]);
    let new = |n: &str| std::fs::read(format!("/usr/bin/{n}")).unwrap();

    // The second rename fails: the first emulator, already moved in, goes back out:
    // over an old file (which comes back) and where there was none (which is gone).
    for old_first in [Some(b"old first".as_slice()), None] {
        let dest = tempfile::tempdir().unwrap();
        if let Some(b) = old_first {
            std::fs::write(dest.path().join(first), b).unwrap();
        }
        std::fs::write(dest.path().join(second), b"old second").unwrap();
        let before = listing(dest.path());
        let Some(_imm) = Immutable::set(&dest.path().join(second)) else {
            skip_unless!(false, "chattr +i does not work under {:?}", dest.path());
            return;
        };
        let out = install(dest.path());
        assert_code(&out, 1);
        assert_error_line(
            &out,
            "nothing was installed (the files already moved are back as they were)",
        );
        assert_eq!(
            listing(dest.path()),
            before,
            "no file changed, no staging left"
        );
    }

    // A directory where an emulator goes is refused before anything moves.
    let dest = tempfile::tempdir().unwrap();
    std::fs::create_dir(dest.path().join(second)).unwrap();
    std::fs::write(dest.path().join(second).join("keep"), b"mine").unwrap();
    let before = listing(dest.path());
    let out = install(dest.path());
    assert_code(&out, 1);
    assert_error_line(&out, "exists and is a directory");
    assert!(
        out.stderr().contains("hint: move it out of the way"),
        "{}",
        out.stderr()
    );
    assert_eq!(listing(dest.path()), before);
    assert_eq!(
        std::fs::read(dest.path().join(second).join("keep")).unwrap(),
        b"mine"
    );

    // And when nothing is in the way, both replace the old files (a symlink too), and
    // the old ones do not linger.
    let dest = tempfile::tempdir().unwrap();
    std::fs::write(dest.path().join(first), b"old first").unwrap();
    std::os::unix::fs::symlink("/nonexistent", dest.path().join(second)).unwrap();
    let out = install(dest.path());
    assert_code(&out, 0);
    assert_eq!(
        listing(dest.path()),
        vec![(first.clone(), new(first)), (second.clone(), new(second))]
    );
}
