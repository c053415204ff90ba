//! Hostile input (issue #11): files and servers built to exhaust memory, disk or time.
//! Each is run under a memory (or file-size) limit where that is the attack, bounded in
//! time, and must end in a one-line error naming the limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use support::{ARCHCTL, RunExt, assert_code, assert_error_line};

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
        .env("ARCHCTL_CACHE_DIR", cache.path())
        .env("ARCHCTL_DOCKER_DAEMON_JSON", "/nonexistent")
        .env("ARCHCTL_REGISTRIES_CONF", "/nonexistent")
        .env("DOCKER_CONFIG", cache.path())
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
    // A file that never ends (a FIFO, a device) is cut at the size cap.
    let (out, _) = limited(
        &[MEM_512M],
        &["compose-platforms", "--no-enable", "/dev/zero"],
        &[],
    );
    assert_code(&out, 2);
    assert_error_line(&out, "larger than 4 MiB");
}
