//! `archctl pick` against a real registry: native first, emulation only when needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::RegistryIsolated;

use support::RunExt;

use serde_json::Value;
use support::registry::{ImageSpec, Registry, RegistryAuth, push_fixtures, push_image};
use support::{ARCHCTL, assert_code, assert_error_line, stdout};

fn pick(args: &[&str]) -> (support::Run, Value) {
    let cache = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(ARCHCTL)
        .args(["--json", "pick"])
        .args(args)
        .registry_isolated(cache.path(), cache.path())
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .run();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

#[test]
fn native_variant_is_chosen_and_attestations_never_are() {
    let reg = Registry::start(RegistryAuth::None);
    let f = push_fixtures(&reg);
    let r = f.attested.reference(&reg.addr());
    for (host, want) in [
        ("linux/amd64", "linux/amd64"),
        ("linux/arm64", "linux/arm64"),
    ] {
        let (out, v) = pick(&["--host-platform", host, &r]);
        assert_code(&out, 0);
        assert_eq!(v["platform"], want);
        assert_eq!(v["mode"], "native");
        assert_eq!(v["emulator"], Value::Null);
        assert_eq!(
            v["digest"],
            f.attested.digest_for(want.trim_end_matches("/v8"))
        );
        assert_eq!(v["reference"], r.as_str());
        let c = v["candidates"].as_array().unwrap();
        assert_eq!(c.len(), 2, "attestations are not candidates: {c:?}");
        for k in c {
            for key in ["platform", "mode", "usable", "reason"] {
                assert!(k.get(key).is_some(), "{key} missing in {k}");
            }
        }
    }
}

#[test]
fn arm_variants_depend_on_aarch32() {
    let reg = Registry::start(RegistryAuth::None);
    let p = push_image(
        &reg,
        "armonly/app",
        "v1",
        ImageSpec::oci_index(&["linux/arm/v6", "linux/arm/v7", "linux/s390x"]),
    );
    let r = p.reference(&reg.addr());
    let (out, v) = pick(&["--host-platform", "linux/arm64", &r]);
    assert_code(&out, 0);
    assert_eq!(
        (v["platform"].as_str(), v["mode"].as_str()),
        (Some("linux/arm/v7"), Some("native"))
    );
    // Apple Silicon has no AArch32: 32-bit arm needs qemu-arm.
    let (out, v) = pick(&["--host-platform", "linux/arm64", "--no-aarch32", &r]);
    assert_code(&out, 0);
    assert_eq!(v["mode"], "emulated");
    assert_eq!(v["emulator"], "arm");
    assert!(v["platform"].as_str().unwrap().starts_with("linux/arm/v"));
}

#[test]
fn single_manifest_images_and_no_emulation() {
    let reg = Registry::start(RegistryAuth::None);
    let f = push_fixtures(&reg);
    let r = f.docker_single.reference(&reg.addr()); // linux/arm64, no index
    let (out, v) = pick(&["--host-platform", "linux/arm64", &r]);
    assert_code(&out, 0);
    assert_eq!(v["platform"], "linux/arm64");
    assert_eq!(v["digest"], f.docker_single.digest.as_str());
    let (out, v) = pick(&["--host-platform", "linux/amd64", "--no-emulation", &r]);
    assert_code(&out, 1);
    assert_eq!(v["platform"], Value::Null);
    assert_error_line(&out, "offers linux/arm64");
    assert_error_line(&out, "--no-emulation");
    // --explain (human) lists every candidate with its reason.
    let out = std::process::Command::new(ARCHCTL)
        .args([
            "pick",
            "--explain",
            "--host-platform",
            "linux/amd64",
            "--no-emulation",
            &r,
        ])
        .env("ARCHCTL_DOCKER_DAEMON_JSON", "/nonexistent")
        .env("ARCHCTL_REGISTRIES_CONF", "/nonexistent")
        .run();
    assert!(
        stdout(&out).contains("emulation refused"),
        "{}",
        stdout(&out)
    );
    let (out, _) = pick(&["--host-platform", "arm64", &r]);
    assert_code(&out, 2);
    assert_error_line(&out, "invalid platform \"arm64\"");
}

#[test]
fn compose_platforms_writes_an_override_per_service_and_registers_what_it_needs() {
    // `web` offers the host's platform; `tool` only a foreign one, so it is emulated.
    let (host, emulated, emulated_platform) = if cfg!(target_arch = "aarch64") {
        ("linux/arm64", "x86_64", "linux/amd64")
    } else {
        ("linux/amd64", "aarch64", "linux/arm64")
    };
    let reg = Registry::start(RegistryAuth::None);
    let f = push_fixtures(&reg);
    let tool = push_image(
        &reg,
        "compose/tool",
        "v1",
        ImageSpec::oci(emulated_platform),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yml");
    std::fs::write(
        &file,
        format!(
            "services:\n  web:\n    image: {}\n  tool:\n    image: {}\n  local:\n    build: .\n  pinned:\n    image: {}\n    platform: linux/s390x\n",
            f.attested.reference(&reg.addr()),
            tool.reference(&reg.addr()),
            f.oci_index.reference(&reg.addr()),
        ),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    // As root it registers what the emulated choices need: in a private binfmt_misc
    // instance here, never the host's.
    require_sandbox!();
    let sb = support::Sandbox::new();
    let run = |extra: &[&str]| {
        sb.command(ARCHCTL)
            .arg("--binfmt-dir")
            .arg(&sb.dir)
            .arg("compose-platforms")
            .args(["--host-platform", host])
            .args(extra)
            .arg(&file)
            .env("ARCHCTL_RUNTIME_DIR", sb.runtime_dir())
            .env("ARCHCTL_CACHE_DIR", cache.path())
            .env("ARCHCTL_DOCKER_DAEMON_JSON", "/nonexistent")
            .env("ARCHCTL_REGISTRIES_CONF", "/nonexistent")
            .run()
    };
    // Without registering: the override says which command each emulated service needs.
    let out = run(&["--no-enable"]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains(&format!(
            "    # before `up`, run: sudo archctl enable {emulated}\n"
        )),
        "{}",
        stdout(&out)
    );
    assert!(!sb.is_mounted() || sb.entries().is_empty());
    let out = run(&["--json"]);
    assert_code(&out, 0);
    assert_eq!(out.json()["registered"], serde_json::json!([emulated]));
    assert!(
        sb.entries().contains(&format!("qemu-{emulated}")),
        "{:?}",
        sb.entries()
    );
    let out = run(&[]);
    assert_code(&out, 0);
    let y = stdout(&out);
    assert!(!y.contains("before `up`"), "{y}");
    assert!(
        y.contains(&format!("  web:\n    platform: {host}  # native")),
        "{y}"
    );
    assert!(
        y.contains(&format!(
            "  tool:\n    platform: {emulated_platform}  # emulated ({emulated})"
        )),
        "{y}"
    );
    assert!(y.contains("# local: no image"), "{y}");
    assert!(
        y.contains("# pinned: platform linux/s390x set in the file"),
        "{y}"
    );
    let out = run(&["--no-emulation"]);
    assert_code(&out, 1);
    assert_error_line(&out, "service tool");
}

#[test]
fn run_dry_run_engine_choice_and_unprivileged_emulation() {
    use std::os::unix::fs::PermissionsExt;
    let reg = Registry::start(RegistryAuth::None);
    let foreign = if cfg!(target_arch = "aarch64") {
        ("linux/amd64", "x86_64")
    } else {
        ("linux/arm64", "aarch64")
    };
    let p = push_image(&reg, "run/foreign", "v1", ImageSpec::oci(foreign.0));
    let r = p.reference(&reg.addr());
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // run asks podman's store (its own here, never the user's) what it has cached.
    let storage = dir.path().join("storage.conf");
    std::fs::write(
        &storage,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/graph\"\nrunroot = \"{0}/run\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let base = |c: &mut std::process::Command| {
        c.env("ARCHCTL_CACHE_DIR", dir.path().join("cache"))
            .env("ARCHCTL_DOCKER_DAEMON_JSON", "/nonexistent")
            .env("ARCHCTL_REGISTRIES_CONF", "/nonexistent")
            .env("DOCKER_CONFIG", dir.path())
            .env("CONTAINERS_STORAGE_CONF", &storage)
            .env("ARCHCTL_BINFMT_DIR", dir.path().join("no-binfmt"));
    };
    // ARCHCTL_ENGINE chooses the engine; --dry-run says what would be enabled and run.
    let mut c = std::process::Command::new(ARCHCTL);
    c.args(["run", "--dry-run", "--rm", &r])
        .env("ARCHCTL_ENGINE", "podman");
    base(&mut c);
    let out = c.run();
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out),
        format!(
            "archctl enable {}\npodman run --platform {} --rm {r}\n",
            foreign.1, foreign.0
        )
    );
    // Without root, archctl says exactly which command registers the handler.
    skip_unless!(
        nix::unistd::geteuid().is_root(),
        "not root: cannot drop to uid 65534 for the unprivileged case"
    );
    let exe = dir.path().join("archctl");
    std::fs::copy(ARCHCTL, &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = std::process::Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["run", "--engine", "docker", "--rm", &r]);
    base(&mut c);
    let out = c.run();
    assert_code(&out, 1);
    assert_error_line(
        &out,
        &format!("run `sudo archctl enable {}` once", foreign.1),
    );
}

const QEMU_X86_64: &str = "/usr/bin/qemu-x86_64-static";

/// `archctl --json pick ARGS` with the registry settings of [`pick`], no binfmt_misc
/// table (so no registered handler is used: the installed emulator is) and `runtime` as
/// the runtime directory (the emulator level cache).
fn pick_in(runtime: &std::path::Path, args: &[&str]) -> (support::Run, Value) {
    let out = std::process::Command::new(ARCHCTL)
        .args(["--json", "pick"])
        .args(args)
        .env("ARCHCTL_CACHE_DIR", runtime.join("cache"))
        .env("ARCHCTL_RUNTIME_DIR", runtime)
        .env("ARCHCTL_BINFMT_DIR", runtime.join("no-binfmt"))
        .env("ARCHCTL_DOCKER_DAEMON_JSON", "/nonexistent")
        .env("ARCHCTL_REGISTRIES_CONF", "/nonexistent")
        .env("DOCKER_CONFIG", runtime)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .run();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

/// The probe program as a file.
fn probe_file(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("x86_64-level");
    std::fs::write(&p, archctl::cpu::X86_64_LEVEL_PROBE).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// The highest "x86-64-vN (supported" glibc's ld.so lists under the emulator (1 when
/// none), where an x86-64 glibc is installed: an independent opinion on the level.
fn glibc_level_under(emulator: &str) -> Option<u32> {
    let ld = "/lib64/ld-linux-x86-64.so.2";
    if !std::path::Path::new(ld).exists() {
        return None;
    }
    let out = std::process::Command::new(emulator)
        .args([ld, "--help"])
        .env_clear()
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let levels: Vec<u32> = text
        .lines()
        .filter(|l| l.contains("(supported"))
        .filter_map(|l| l.trim().strip_prefix("x86-64-v"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    Some(levels.into_iter().max().unwrap_or(1))
}

#[test]
fn emulated_amd64_takes_the_highest_level_the_emulator_runs() {
    skip_unless!(
        std::path::Path::new(QEMU_X86_64).exists(),
        "{QEMU_X86_64} missing (Debian package qemu-user-static)"
    );
    let dir = tempfile::tempdir().unwrap();
    // What the emulator provides, asked directly (no binfmt_misc involved).
    let probe = probe_file(dir.path());
    let out = std::process::Command::new(QEMU_X86_64)
        .arg(&probe)
        .env_clear()
        .run();
    let level = out.status.code().unwrap() as u32;
    assert!(
        (2..=4).contains(&level),
        "qemu-x86_64 (Debian's 7.2 runs x86-64-v3) reports level {level}: {}",
        out.shown()
    );
    assert_eq!(out.stdout(), format!("x86-64-v{level}\n"));
    if let Some(glibc) = glibc_level_under(QEMU_X86_64) {
        assert_eq!(level, glibc, "glibc's ld.so under qemu disagrees");
    }
    assert_eq!(
        archctl::cpu::probe_x86_64_level(std::path::Path::new(QEMU_X86_64)).unwrap(),
        level
    );

    // An image offering amd64 v2, v3, v4 on an arm64 host (given, so that on an x86_64
    // host too amd64 is foreign): the highest level the emulator runs, emulated.
    let reg = Registry::start(RegistryAuth::None);
    let img = push_image(
        &reg,
        "levels/app",
        "v1",
        ImageSpec::oci_index(&["linux/amd64/v2", "linux/amd64/v3", "linux/amd64/v4"]),
    );
    let r = img.reference(&reg.addr());
    let runtime = tempfile::tempdir().unwrap();
    let args = ["--host-platform", "linux/arm64", "--explain", r.as_str()];
    let (out, v) = pick_in(runtime.path(), &args);
    assert_code(&out, 0);
    let want = format!("linux/amd64/v{level}");
    assert_eq!(v["platform"], want.as_str(), "{}", out.shown());
    assert_eq!(v["mode"], "emulated");
    assert_eq!(v["emulator"], "x86_64");
    assert_eq!(v["digest"], img.digest_for(&want));
    let provides = format!("qemu-x86_64-static provides x86-64-v{level}");
    for c in v["candidates"].as_array().unwrap() {
        let p = c["platform"].as_str().unwrap();
        let n: u32 = p.trim_start_matches("linux/amd64/v").parse().unwrap();
        let reason = c["reason"].as_str().unwrap();
        assert!(reason.contains(&provides), "{c}");
        if n == level {
            assert!(reason.starts_with("chosen: emulated"), "{c}");
        } else if n > level {
            assert_eq!(c["usable"], false, "{c}");
            assert!(reason.contains(&format!("needs x86-64-v{n}")), "{c}");
        } else {
            assert_eq!(c["usable"], true, "{c}");
        }
    }
    // The human --explain says the same.
    let human = std::process::Command::new(ARCHCTL)
        .args(["pick"])
        .args(args)
        .env("ARCHCTL_CACHE_DIR", runtime.path().join("cache"))
        .env("ARCHCTL_RUNTIME_DIR", runtime.path())
        .env("ARCHCTL_BINFMT_DIR", runtime.path().join("no-binfmt"))
        .env("ARCHCTL_DOCKER_DAEMON_JSON", "/nonexistent")
        .env("ARCHCTL_REGISTRIES_CONF", "/nonexistent")
        .run();
    assert_code(&human, 0);
    assert!(
        human
            .stdout()
            .starts_with(&format!("{want}  emulated (x86_64)")),
        "{}",
        human.shown()
    );
    assert!(human.stdout().contains(&provides), "{}", human.shown());

    // The level is remembered per emulator file in the runtime directory, and used: a
    // doctored entry changes the choice; a changed key (another file) does not match.
    let cache = runtime.path().join("x86_64-levels.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    let entries = c["levels"].as_array_mut().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["emulator"], QEMU_X86_64);
    assert_eq!(entries[0]["level"], level);
    entries[0]["level"] = 2.into();
    std::fs::write(&cache, serde_json::to_vec(&c).unwrap()).unwrap();
    let (out, v) = pick_in(runtime.path(), &args);
    assert_code(&out, 0);
    assert_eq!(v["platform"], "linux/amd64/v2", "the cache was not used");
    c["levels"][0]["key"] = "another file".into();
    std::fs::write(&cache, serde_json::to_vec(&c).unwrap()).unwrap();
    let (out, v) = pick_in(runtime.path(), &args);
    assert_code(&out, 0);
    assert_eq!(v["platform"], want.as_str(), "a stale entry was used");

    // --no-emulation: no amd64 level runs on an arm64 host.
    let (out, v) = pick_in(
        runtime.path(),
        &[
            "--host-platform",
            "linux/arm64",
            "--no-emulation",
            r.as_str(),
        ],
    );
    assert_code(&out, 1);
    assert_eq!(v["platform"], Value::Null);
}

/// Probing, not assuming: the same QEMU presenting other CPU models reports their
/// levels, and something that is no x86-64 emulator is an error, not a level.
#[test]
fn the_probe_reports_what_the_emulator_presents() {
    use std::os::unix::fs::PermissionsExt;
    skip_unless!(
        std::path::Path::new(QEMU_X86_64).exists(),
        "{QEMU_X86_64} missing (Debian package qemu-user-static)"
    );
    let dir = tempfile::tempdir().unwrap();
    // Haswell's v3 needs AVX2 from QEMU's TCG (7.2 has it): at most what the default
    // model ("max") reports.
    let max = archctl::cpu::probe_x86_64_level(std::path::Path::new(QEMU_X86_64)).unwrap();
    for (model, level) in [("qemu64", 1), ("Nehalem", 2), ("Haswell", max.min(3))] {
        let wrapper = dir.path().join(format!("qemu-{model}"));
        std::fs::write(
            &wrapper,
            format!("#!/bin/sh\nexec {QEMU_X86_64} -cpu {model} \"$@\" 2>/dev/null\n"),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            archctl::cpu::probe_x86_64_level(&wrapper).unwrap(),
            level,
            "-cpu {model}"
        );
    }
    let err = archctl::cpu::probe_x86_64_level(std::path::Path::new("/bin/true")).unwrap_err();
    assert!(
        err.to_string().contains("exited 0 (not a level 1..4)"),
        "{err}"
    );
    let err = archctl::cpu::probe_x86_64_level(&dir.path().join("absent")).unwrap_err();
    assert!(err.to_string().starts_with("cannot run"), "{err}");
}

/// Without --host-platform the host's own variant counts: on x86-64 its CPUID level
/// (amd64/vN natively, N from detection, never above it), on arm64 containerd's v8.
#[test]
fn the_detected_host_variant_chooses_natively() {
    let reg = Registry::start(RegistryAuth::None);
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(ARCHCTL)
        .args(["--json", "status"])
        .env("ARCHCTL_RUNTIME_DIR", dir.path())
        .env("ARCHCTL_BINFMT_DIR", dir.path().join("no-binfmt"))
        .run();
    assert_code(&status, 0);
    let host = status.json()["host"]["platform"]
        .as_str()
        .map(str::to_string);
    if cfg!(target_arch = "x86_64") {
        let level = archctl::cpu::host_amd64_level().unwrap();
        let want = if level == 1 {
            "linux/amd64".to_string()
        } else {
            format!("linux/amd64/v{level}")
        };
        assert_eq!(host.as_deref(), Some(want.as_str()));
        let img = push_image(
            &reg,
            "levels/native",
            "v1",
            ImageSpec::oci_index(&[
                "linux/arm64",
                "linux/amd64",
                "linux/amd64/v2",
                "linux/amd64/v3",
                "linux/amd64/v4",
            ]),
        );
        let r = img.reference(&reg.addr());
        let (out, v) = pick_in(dir.path(), &[&r]);
        assert_code(&out, 0);
        assert_eq!(v["platform"], want.as_str());
        assert_eq!(v["mode"], "native");
        // Given, it is used as given: a v2 host takes v2 and rejects v3 with the reason.
        let (out, v) = pick_in(dir.path(), &["--host-platform", "linux/amd64/v2", &r]);
        assert_code(&out, 0);
        assert_eq!(v["platform"], "linux/amd64/v2");
        let v3 = &v["candidates"][3];
        assert_eq!(v3["platform"], "linux/amd64/v3");
        assert!(
            v3["reason"]
                .as_str()
                .unwrap()
                .starts_with("linux/amd64/v2 provides x86-64-v2; linux/amd64/v3 needs x86-64-v3"),
            "{v3}"
        );
    } else if cfg!(target_arch = "aarch64") {
        assert_eq!(host.as_deref(), Some("linux/arm64"));
        let img = push_image(
            &reg,
            "levels/native",
            "v1",
            ImageSpec::oci_index(&["linux/arm64/v9", "linux/arm64/v8", "linux/amd64"]),
        );
        let (out, v) = pick_in(dir.path(), &[&img.reference(&reg.addr())]);
        assert_code(&out, 0);
        assert_eq!(v["platform"], "linux/arm64");
        assert_eq!(v["mode"], "native");
    }
}

#[test]
fn pick_without_an_engine_asks_only_the_registry() {
    let reg = Registry::start(RegistryAuth::None);
    let known = push_image(&reg, "noengine/app", "v1", ImageSpec::oci("linux/arm64"))
        .reference(&reg.addr());
    let missing = format!("{}/noengine/missing:1", reg.addr());
    // No docker, podman or nerdctl on PATH.
    let empty = tempfile::tempdir().unwrap();
    let pick = |args: &[&str]| {
        std::process::Command::new(ARCHCTL)
            .args(["--json", "pick", "--host-platform", "linux/arm64"])
            .args(args)
            .env("PATH", empty.path())
            .env_remove("ARCHCTL_ENGINE")
            .registry_isolated(empty.path().join("cache"), empty.path())
            .run()
    };
    let out = pick(&[&known]);
    assert_code(&out, 0);
    let v = out.json();
    assert_eq!(v["platform"], "linux/arm64");
    assert_eq!(v["source"], "registry", "{v}");
    assert!(v.get("note").is_none(), "{v}");
    // Unknown to the registry and no engine to ask: the registry's error, as before.
    let out = pick(&[&missing]);
    assert_code(&out, 1);
    assert_error_line(&out, "repository noengine/missing not found");
    assert!(
        !support::stderr(&out).contains("local image"),
        "{}",
        out.shown()
    );
    // A named engine that is not installed: the same error, and a hint saying so.
    let out = pick(&["--engine", "podman", &missing]);
    assert_code(&out, 1);
    assert_error_line(&out, "repository noengine/missing not found");
    assert!(
        support::stderr(&out)
            .contains("hint: the local images could not be read: cannot run podman"),
        "{}",
        out.shown()
    );
    // An engine archctl does not know is a usage error.
    let out = pick(&["--engine", "lxc", &known]);
    assert_code(&out, 2);
    assert_error_line(&out, "unknown engine \"lxc\"");
}
