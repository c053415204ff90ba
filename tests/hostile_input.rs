//! Hostile input (issue #11): files and servers built to exhaust memory, disk or time.
//! Each is run under a memory (or file-size) limit where that is the attack, bounded in
//! time, and must end in a one-line error naming the limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::RegistryIsolated;

use std::{
    io::Read,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use support::{
    ARCHCTL, RunExt, assert_code, assert_error_line,
    registry::{Hostile, HostileServer},
};

/// archctl under `prlimit` (`limits`, e.g. `--as=536870912`) and `timeout`, with the
/// registry settings of the machine out of the way; returns the run and how long it took.
fn limited(limits: &[&str], args: &[&str], env: &[(&str, &str)]) -> (support::Run, Duration) {
    let cache = tempfile::tempdir().unwrap();
    let mut c = Command::new("timeout");
    c.args(["--kill-after=5", "60", "prlimit"])
        .args(limits)
        .arg("--")
        .arg(ARCHCTL)
        .args(args)
        .registry_isolated(cache.path(), cache.path())
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy");
    for (k, v) in env {
        c.env(k, v);
    }
    let t = Instant::now();
    let out = c.run();
    (out, t.elapsed())
}

const MEM_512M: &str = "--as=536870912";

#[test]
fn compose_alias_bomb_is_refused_quickly_within_512_mib() {
    // "Billion laughs": 9 levels of 10 aliases each, 10^9 scalars once expanded, < 1 KB.
    let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        let row = vec![format!("*a{p}"); 10].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{row}]\n"));
    }
    bomb.push_str("services:\n  web:\n    image: alpine\n    labels: *a9\n");
    assert!(bomb.len() < 1024, "{} bytes", bomb.len());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yml");
    std::fs::write(&file, &bomb).unwrap();
    let (out, took) = limited(
        &[MEM_512M],
        &["compose-platforms", "--no-enable", file.to_str().unwrap()],
        &[],
    );
    assert_code(&out, 2);
    assert_error_line(&out, "alias bomb");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // A file that never ends (a device) or never begins (a FIFO without a writer) is
    // refused before it is read; a regular file is cut at the size cap.
    let (out, _) = limited(
        &[MEM_512M],
        &["compose-platforms", "--no-enable", "/dev/zero"],
        &[],
    );
    assert_code(&out, 2);
    assert_error_line(&out, "/dev/zero: is a character device, not a regular file");
    let fifo = dir.path().join("fifo.yml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (out, took) = limited(
        &[MEM_512M],
        &["compose-platforms", "--no-enable", fifo.to_str().unwrap()],
        &[],
    );
    assert_code(&out, 2);
    assert_error_line(&out, "is a FIFO (named pipe), not a regular file");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let big = dir.path().join("big.yml");
    std::fs::write(&big, vec![b'#'; (4 << 20) + 1]).unwrap();
    let (out, _) = limited(
        &[MEM_512M],
        &["compose-platforms", "--no-enable", big.to_str().unwrap()],
        &[],
    );
    assert_code(&out, 2);
    assert_error_line(&out, "larger than 4 MiB");
}

/// An endless body: 'a' forever.
fn endless(head: &str) -> Hostile {
    Hostile::Endless(head.to_string(), b"a".to_vec())
}

#[test]
fn endless_token_reply_is_cut_at_the_cap_within_512_mib() {
    let tokens =
        HostileServer::start(|_| endless("HTTP/1.1 200 OK\r\nContent-Type: application/json"));
    let realm = tokens.url("/token");
    let registry = support::FakeServer::start(move |_, _| {
        (
            401,
            vec![(
                "WWW-Authenticate".into(),
                format!("Bearer realm=\"{realm}\",service=\"hostile\""),
            )],
            b"{}".to_vec(),
        )
    });
    let image = format!("{}/x/y:t", registry.addr);
    let (out, took) = limited(&[MEM_512M], &["inspect", "--timeout", "30", &image], &[]);
    assert_code(&out, 1);
    assert_error_line(&out, "token reply larger than 1024 KiB");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(tokens.requests.lock().unwrap().len(), 1);
}

#[test]
fn endless_error_bodies_are_read_only_in_part_within_512_mib() {
    // 400 (what a TLS server says to plain HTTP, read to tell that apart) and 404
    // (read for the registry's error code), both never ending.
    for (status, needle) in [
        ("400 Bad Request", "400 Bad Request"),
        ("404 Not Found", "not found"),
    ] {
        let head = format!("HTTP/1.1 {status}\r\nContent-Type: application/json");
        let registry = HostileServer::start(move |_| endless(&head));
        let image = format!("{}/x/y:t", registry.addr);
        let (out, took) = limited(&[MEM_512M], &["inspect", "--timeout", "30", &image], &[]);
        assert_code(&out, 1);
        assert_error_line(&out, needle);
        assert!(took < Duration::from_secs(20), "{status}: took {took:?}");
    }
}

/// `archctl emulators install --from FROM --sha256 SHA --dest DEST --timeout SECS`.
fn install(
    limits: &[&str],
    from: &str,
    sha: &str,
    dest: &Path,
    secs: u64,
) -> (support::Run, Duration) {
    let secs = secs.to_string();
    limited(
        limits,
        &[
            "emulators",
            "install",
            "--from",
            from,
            "--sha256",
            sha,
            "--dest",
            dest.to_str().unwrap(),
            "--timeout",
            &secs,
        ],
        &[],
    )
}

const ANY_SHA: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[test]
fn a_trickling_download_stalls_within_its_timeout() {
    // One byte every 2 s: no read ever waits --timeout, yet it would never end.
    let srv = HostileServer::start(|_| {
        Hostile::Trickle(
            "HTTP/1.1 200 OK\r\nContent-Length: 1000000".into(),
            b"x".to_vec(),
            Duration::from_secs(2),
        )
    });
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("emulators");
    let (out, took) = install(&[], &srv.url("/b.tar.gz"), ANY_SHA, &dest, 3);
    assert_code(&out, 1);
    assert_error_line(&out, "stalled: ");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(!dest.exists());
}

#[test]
fn a_download_that_never_ends_meets_its_deadline() {
    // 80 KiB every half second never stalls, and never ends: --timeout 1 allows 30 s.
    let srv = HostileServer::start(|_| {
        Hostile::Drip(
            "HTTP/1.1 200 OK".into(),
            vec![b'x'; 80 << 10],
            Duration::from_millis(500),
        )
    });
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("emulators");
    let (out, took) = install(&[], &srv.url("/b.tar.gz"), ANY_SHA, &dest, 1);
    assert_code(&out, 1);
    assert_error_line(&out, "not finished after 30 s");
    assert!(took < Duration::from_secs(40), "took {took:?}");
    assert!(!dest.exists());
}

#[test]
fn downloads_are_capped_in_size_declared_or_not() {
    // Declared too large: refused before the body. Endless: cut at 512 MiB, which a
    // file-size limit just above it proves is all that is written.
    let srv = HostileServer::start(|path| {
        if path == "/declared.tar.gz" {
            Hostile::Answer(
                "HTTP/1.1 200 OK\r\nContent-Length: 4294967296".into(),
                vec![],
            )
        } else {
            endless("HTTP/1.1 200 OK")
        }
    });
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("emulators");
    let (out, took) = install(&[], &srv.url("/declared.tar.gz"), ANY_SHA, &dest, 10);
    assert_code(&out, 1);
    assert_error_line(
        &out,
        "4294967296 bytes, more than the 512 MiB archctl downloads",
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let fsize = format!("--fsize={}", 520u64 << 20);
    let (out, took) = install(&[&fsize], &srv.url("/endless.tar.gz"), ANY_SHA, &dest, 10);
    assert_code(&out, 1);
    assert_error_line(&out, "more than the 512 MiB archctl downloads");
    assert!(took < Duration::from_secs(50), "took {took:?}");
    assert!(!dest.exists());
}

/// A tar.gz of `entries` (raw name, type, size), each entry's content zeros.
fn zeros_tarball(entries: &[(&str, tar::EntryType, u64)]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, kind, size) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(*size);
        h.set_mode(0o755);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, std::io::repeat(0).take(*size)).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn gzip_bombs_are_refused_before_they_fill_disk_or_memory() {
    use tar::EntryType::{GNULongName, Regular};
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("emulators");
    // Three 100 MiB files of zeros, about 300 KB packed: refused from the first header,
    // under a file-size limit of 64 MiB that any write of one would break.
    let files = zeros_tarball(&[
        ("qemu-a-static", Regular, 100 << 20),
        ("qemu-b-static", Regular, 100 << 20),
        ("qemu-c-static", Regular, 100 << 20),
    ]);
    // A GNU long name of 600 MiB (tar reads those into memory), under 512 MiB.
    let long_name = zeros_tarball(&[
        ("././@LongLink", GNULongName, 600 << 20),
        ("qemu-a-static", Regular, 1),
    ]);
    for (what, bytes, limit) in [
        ("files", files, format!("--fsize={}", 64u64 << 20)),
        ("long name", long_name, MEM_512M.to_string()),
    ] {
        assert!(bytes.len() < 4 << 20, "{what}: {} bytes", bytes.len());
        let file = dir.path().join("bomb.tar.gz");
        std::fs::write(&file, &bytes).unwrap();
        let sha = support::registry::sha256_hex(&bytes);
        let (out, took) = install(&[&limit], file.to_str().unwrap(), &sha, &dest, 10);
        assert_code(&out, 1);
        assert_error_line(&out, "unpacks to more than");
        assert!(took < Duration::from_secs(20), "{what}: took {took:?}");
        assert!(!dest.exists(), "{what}");
    }
}

#[test]
fn an_index_listing_thousands_of_entries_is_refused_before_any_is_fetched() {
    // 1025 entries fit in 200 KB; --verify-platforms would fetch two documents each.
    let entry = |i: usize| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{i:064x}"),
            "size": 1,
            "platform": {"os": "linux", "architecture": "amd64"},
        })
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": (0..1025).map(entry).collect::<Vec<_>>(),
    }))
    .unwrap();
    let registry = support::FakeServer::start(move |_, _| {
        (
            200,
            vec![(
                "Content-Type".into(),
                "application/vnd.oci.image.index.v1+json".into(),
            )],
            index.clone(),
        )
    });
    let image = format!("{}/x/y:t", registry.addr);
    let (out, _) = limited(&[], &["inspect", "--verify-platforms", &image], &[]);
    assert_code(&out, 1);
    assert_error_line(
        &out,
        "lists 1025 entries, more than the 1024 archctl accepts",
    );
    assert_eq!(
        registry.seen.lock().unwrap().len(),
        1,
        "only the index was fetched"
    );
}

#[test]
fn a_trickling_registry_reply_ends_within_the_timeout() {
    // A manifest of 1000 bytes, one byte a second: the request's --timeout covers the
    // body too.
    let registry = HostileServer::start(|_| {
        Hostile::Trickle(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: 1000".into(),
            b"{".to_vec(),
            Duration::from_secs(1),
        )
    });
    let image = format!("{}/x/y:t", registry.addr);
    let (out, took) = limited(&[], &["inspect", "--timeout", "2", &image], &[]);
    assert_code(&out, 1);
    assert_error_line(&out, "timed out after 2 s");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_signal_during_install_removes_its_staging_and_the_directories_it_made() {
    use nix::sys::signal::{Signal, kill};
    // A download that would take hours: the signal comes while it runs.
    let srv = HostileServer::start(|_| {
        Hostile::Trickle(
            "HTTP/1.1 200 OK\r\nContent-Length: 100000000".into(),
            vec![b'x'; 100],
            Duration::from_millis(200),
        )
    });
    for (signal, existing) in [(Signal::SIGINT, false), (Signal::SIGTERM, true)] {
        let parent = tempfile::tempdir().unwrap();
        let dest = parent.path().join("usr/local/lib/emulators");
        if existing {
            std::fs::create_dir_all(&dest).unwrap();
            std::fs::write(dest.join("qemu-aarch64-static"), b"old").unwrap();
        }
        let cache = tempfile::tempdir().unwrap();
        let mut child = Command::new(ARCHCTL)
            .args(["emulators", "install", "--from"])
            .arg(srv.url("/b.tar.gz"))
            .args(["--sha256", ANY_SHA, "--timeout", "60", "--dest"])
            .arg(&dest)
            .registry_isolated(cache.path(), cache.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Until its staging directory exists (the download has begun), at most 20 s.
        let started = Instant::now();
        let staging = || {
            std::fs::read_dir(&dest).ok().is_some_and(|d| {
                d.flatten().any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(".archctl-install-")
                })
            })
        };
        while !staging() && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            staging(),
            "no staging directory appeared in {}",
            dest.display()
        );
        std::thread::sleep(Duration::from_millis(300));
        kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        let signalled = Instant::now();
        while child.try_wait().unwrap().is_none() && signalled.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
            panic!("{signal}: archctl still runs 20 s after the signal");
        }
        let out = support::Run {
            argv: vec!["archctl emulators install".into()],
            output: child.wait_with_output().unwrap(),
        };
        assert_code(&out, 1);
        assert_error_line(&out, "interrupted by a signal; nothing was installed");
        if existing {
            let names: Vec<_> = std::fs::read_dir(&dest)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["qemu-aarch64-static"], "{signal}");
            assert_eq!(
                std::fs::read(dest.join("qemu-aarch64-static")).unwrap(),
                b"old"
            );
        } else {
            // Not even the directories it created for --dest are left.
            let left: Vec<_> = std::fs::read_dir(parent.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(left.is_empty(), "{signal}: left {left:?}");
        }
    }
}
