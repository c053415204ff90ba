//! Coexistence with the handlers other tools register (binfmt-rules/wild.toml): the
//! exact register strings of QEMU's qemu-binfmt-conf.sh (multiarch/qemu-user-static,
//! qus), Debian's binfmt.d files loaded by the real systemd-binfmt, and tonistiigi/binfmt
//! registering from inside a container (its interpreter paths do not exist here). Each
//! is registered in a private binfmt_misc instance, then `status`, `enable`, `boot`,
//! `test` and `disable` are run against it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::RegistryIsolated;

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;
use support::{Sandbox, assert_code, stderr, stdout};

#[derive(Deserialize)]
struct Wild {
    source: Vec<Source>,
}

#[derive(Deserialize)]
struct Source {
    tool: String,
    #[serde(default)]
    selects_nothing: Vec<String>,
    lines: Vec<String>,
}

fn wild() -> Wild {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("binfmt-rules/wild.toml"),
    )
    .unwrap();
    toml::from_str(&text).unwrap()
}

fn source(tool: &str) -> Source {
    wild().source.into_iter().find(|s| s.tool == tool).unwrap()
}

/// One register string's fields.
struct Line {
    name: String,
    offset: u8,
    magic: Vec<u8>,
    mask: Vec<u8>,
    interpreter: String,
    text: String,
}

fn parse(text: &str) -> Line {
    let f: Vec<&str> = text.split(':').collect();
    assert_eq!(f.len(), 8, "{text}");
    let bytes = |s: &str| archctl::rules_data::parse_escaped(s).unwrap();
    Line {
        name: f[1].to_string(),
        offset: f[3].parse().unwrap_or(0),
        magic: bytes(f[4]),
        mask: bytes(f[5]),
        interpreter: f[6].to_string(),
        text: text.to_string(),
    }
}

/// The QEMU target an entry of this name is for (`qemu-<target>`).
fn target(name: &str) -> &str {
    name.strip_prefix("qemu-").unwrap()
}

#[test]
fn every_wild_register_string_selects_its_architecture_and_no_other() {
    let table = archctl::arch::Table::builtin();
    let w = wild();
    assert_eq!(w.source.len(), 3);
    let mut checked = 0;
    for s in &w.source {
        assert!(!s.lines.is_empty(), "{}", s.tool);
        for l in s.lines.iter().map(|t| parse(t)) {
            let selected: Vec<&str> = table
                .selected_by(l.offset, &l.magic, &l.mask)
                .iter()
                .map(|r| r.name.as_str())
                .collect();
            if s.selects_nothing.contains(&l.name) {
                assert!(selected.is_empty(), "{}: {} {selected:?}", s.tool, l.text);
            } else {
                assert_eq!(selected, [target(&l.name)], "{}: {}", s.tool, l.text);
            }
            checked += 1;
        }
    }
    assert!(checked >= 70, "{checked}");
}

/// Native architectures of this host, as archctl decides them.
fn native(sb: &Sandbox) -> Vec<String> {
    let (out, v) = sb.archctl_json(&["status"]);
    assert_code(&out, 0);
    v["native"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// `status --json` entries by name.
fn status(sb: &Sandbox) -> BTreeMap<String, serde_json::Value> {
    let (out, v) = sb.archctl_json(&["status"]);
    assert_code(&out, 0);
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

/// `enable --all --json` entries by arch, and the run.
fn enable_all(sb: &Sandbox, args: &[&str]) -> (support::Run, BTreeMap<String, serde_json::Value>) {
    let mut a = vec!["enable", "--all"];
    a.extend_from_slice(args);
    let (out, v) = sb.archctl_json(&a);
    let by_arch = v["entries"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| (e["arch"].as_str().unwrap().to_string(), e.clone()))
        .collect();
    (out, by_arch)
}

/// Register the lines of `tool` that this host would (not its own architectures, and
/// only those whose interpreter exists: F opens it at registration). Returns them.
fn register_visible(sb: &Sandbox, tool: &str) -> Vec<Line> {
    let native = native(sb);
    let lines: Vec<Line> = source(tool)
        .lines
        .iter()
        .map(|t| parse(t))
        .filter(|l| !native.iter().any(|n| n == target(&l.name)))
        .filter(|l| Path::new(&l.interpreter).exists())
        .collect();
    for l in &lines {
        sb.register_raw(&l.text);
    }
    lines
}

/// Register `lines` the way a privileged container does: from a child mount namespace
/// in which `dir` (a directory of this host) holds `files` — (file name, copied from) —
/// and the interpreters' paths exist only there. Once it ends, they are gone.
fn register_from_container(sb: &Sandbox, dir: &str, files: &[(String, String)], lines: &[String]) {
    let image = sb.tmp.path().join("container-files");
    std::fs::create_dir(&image).unwrap();
    for (name, from) in files {
        assert!(
            !Path::new(dir).join(name).exists(),
            "{dir}/{name} is visible here"
        );
        std::fs::copy(from, image.join(name)).unwrap();
    }
    let mut script = format!("mount --bind '{}' '{dir}'", image.display());
    for l in lines {
        script.push_str(&format!(
            " && printf '%s' '{l}' > '{}/register'",
            sb.dir.display()
        ));
    }
    let out = sb
        .command("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "register: {}", stderr(&out));
    std::fs::remove_dir_all(&image).unwrap();
}

#[test]
fn qemu_script_entries_serve_and_its_broken_microblaze_is_the_one_conflict() {
    require_sandbox!();
    let sb = Sandbox::mounted();
    let lines = register_visible(&sb, "qemu-binfmt-conf.sh");
    assert!(lines.len() >= 20, "{}", lines.len());
    let before = sb.snapshot();
    let st = status(&sb);
    for l in &lines {
        let e = &st[&l.name];
        let want = if l.name == "qemu-microblaze" {
            "unknown"
        } else {
            target(&l.name)
        };
        assert_eq!(e["arch"], want, "{e}");
        assert_eq!(e["interpreter_ok"], true, "{e}");
    }
    let (out, by_arch) = enable_all(&sb, &["--no-verify"]);
    // The script's big-endian microblaze magic catches no microblaze program: the one
    // architecture not served. Everything else is left as the script registered it.
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("qemu-microblaze exists and differs: magic/mask"),
        "{}",
        stderr(&out)
    );
    let mut equivalent = 0;
    for l in lines.iter().filter(|l| l.name != "qemu-microblaze") {
        let e = &by_arch[target(&l.name)];
        // Identical to archctl's own (arm, aarch64, ...), or equivalent (other masks).
        assert_eq!(e["action"], "unchanged", "{e}");
        equivalent += usize::from(e["equivalent"].as_str().is_some());
    }
    assert!(equivalent >= 10, "{equivalent} equivalent");
    assert_eq!(by_arch["microblaze"]["action"], "skipped-conflict");
    for (name, text) in &before {
        assert_eq!(sb.entry(name).as_ref(), Some(text), "{name} was touched");
    }
    // boot agrees, and the entries work.
    let cfg = sb.tmp.path().join("config.toml");
    std::fs::write(&cfg, "[binfmt]\narchitectures = \"all\"\nverify = false\n").unwrap();
    let out = sb.archctl(&["--config", cfg.to_str().unwrap(), "boot"]);
    assert_code(&out, 1);
    assert!(stdout(&out).contains("1 conflicting"), "{}", stdout(&out));
    assert_code(&sb.archctl(&["test"]), 0);
    // disable removes every qemu-* entry, the script's included.
    assert_code(&sb.archctl(&["disable", "--all"]), 0);
    assert!(sb.entries().is_empty(), "{:?}", sb.entries());
}

#[test]
fn debian_entries_loaded_by_systemd_binfmt_serve() {
    require_sandbox!();
    let systemd_binfmt = "/usr/lib/systemd/systemd-binfmt";
    skip_unless!(
        Path::new(systemd_binfmt).exists(),
        "{systemd_binfmt} (systemd) not installed"
    );
    let confs: Vec<String> = std::fs::read_dir("/usr/lib/binfmt.d")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().display().to_string())
                .filter(|p| p.contains("/qemu-") && p.ends_with(".conf"))
                .collect()
        })
        .unwrap_or_default();
    skip_unless!(
        confs.len() >= 20,
        "Debian's qemu-user-static binfmt.d files are not installed"
    );
    let sb = Sandbox::mounted();
    // systemd-binfmt writes to /proc/sys/fs/binfmt_misc: the sandbox's instance there.
    let out = sb.sh(&format!(
        "mount --bind '{}' /proc/sys/fs/binfmt_misc && {systemd_binfmt} {}",
        sb.dir.display(),
        confs.join(" ")
    ));
    assert!(out.status.success(), "systemd-binfmt: {}", stderr(&out));
    let loaded = sb.entries();
    assert_eq!(loaded.len(), confs.len(), "{loaded:?}");
    let st = status(&sb);
    assert_eq!(st["qemu-microblaze"]["arch"], "microblaze");
    assert!(st.values().all(|e| e["interpreter_ok"] == true), "{st:?}");
    let before = sb.snapshot();
    let (out, by_arch) = enable_all(&sb, &[]);
    assert_code(&out, 0);
    // (Debian ships no entry for the host's own family; should one be loaded, archctl
    // reports it skipped-native, whatever it is: only the foreign ones are compared.)
    let native = native(&sb);
    let foreign: Vec<&String> = loaded
        .iter()
        .filter(|n| !native.iter().any(|a| a == target(n)))
        .collect();
    assert!(foreign.len() >= 20, "{foreign:?}");
    for name in &foreign {
        let e = &by_arch[target(name)];
        assert_eq!(e["action"], "unchanged", "{e}");
        let why = e["equivalent"].as_str().unwrap();
        assert!(
            why.contains("-> /usr/bin/qemu-") && why.contains("flags POF"),
            "{why}"
        );
    }
    // What Debian registered is untouched (archctl added the targets it leaves out).
    let unchanged = |sb: &Sandbox| {
        for (name, text) in &before {
            assert_eq!(sb.entry(name).as_ref(), Some(text), "{name} was touched");
        }
    };
    unchanged(&sb);
    // One architecture by name, and boot, the same.
    let one = target(foreign[0]).to_string();
    let (out, v) = sb.archctl_json(&["enable", &one]);
    assert_code(&out, 0);
    assert_eq!(v["entries"][0]["action"], "unchanged");
    let out = sb.archctl(&["--config", "/nonexistent/config.toml", "boot"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("0 conflicting"), "{}", stdout(&out));
    unchanged(&sb);
    assert_code(&sb.archctl(&["test"]), 0);
}

#[test]
fn entries_registered_from_a_container_are_tested_and_serve() {
    require_sandbox!();
    let sb = Sandbox::mounted();
    let native = native(&sb);
    // tonistiigi/binfmt's lines, registered the way its container does it: the
    // interpreters exist at /usr/bin/qemu-* only in its mount namespace (here a bind
    // mount of a directory of copies over /usr/bin, in a child mount namespace that
    // ends with the registration).
    let lines: Vec<Line> = source("tonistiigi/binfmt")
        .lines
        .iter()
        .map(|t| parse(t))
        .filter(|l| !native.iter().any(|n| n == target(&l.name)))
        .filter(|l| Path::new(&format!("{}-static", l.interpreter)).exists())
        .collect();
    assert!(lines.len() >= 5, "{}", lines.len());
    let files: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            let name = Path::new(&l.interpreter).file_name().unwrap();
            (
                name.to_string_lossy().into_owned(),
                format!("{}-static", l.interpreter),
            )
        })
        .collect();
    let texts: Vec<String> = lines.iter().map(|l| l.text.clone()).collect();
    register_from_container(&sb, "/usr/bin", &files, &texts);
    let st = status(&sb);
    for l in &lines {
        let e = &st[&l.name];
        assert_eq!(e["arch"], target(&l.name), "{e}");
        assert_eq!(e["flags"], "OCF", "{e}");
        assert_eq!(e["interpreter_visible"], false, "{e}");
        assert_eq!(e["interpreter_tested"], true, "{e}");
        assert_eq!(e["interpreter_ok"], true, "{e}");
    }
    let before = sb.snapshot();
    let (out, by_arch) = enable_all(&sb, &[]);
    assert_code(&out, 0);
    for l in &lines {
        let e = &by_arch[target(&l.name)];
        assert_eq!(e["action"], "unchanged", "{e}");
        assert!(
            e["equivalent"]
                .as_str()
                .unwrap()
                .contains("not visible here"),
            "{e}"
        );
    }
    assert!(
        stderr(&out).contains("flag C: setuid programs"),
        "{}",
        stderr(&out)
    );
    for (name, text) in &before {
        assert_eq!(sb.entry(name).as_ref(), Some(text), "{name} was touched");
    }
    assert_code(&sb.archctl(&["test"]), 0);
    // Taken away, the same entries no longer serve: one whose file is gone and whose
    // handler now fails (re-registered without F) is a conflict.
    let l = &lines[0];
    let gone = l.text.replace(":CF", ":");
    assert!(
        sb.sh(&format!("echo -1 > '{}/{}'", sb.dir.display(), l.name))
            .status
            .success()
    );
    sb.register_raw(&gone);
    let out = sb.archctl(&["enable", target(&l.name)]);
    assert_code(&out, 1);
    assert!(stderr(&out).contains("without F"), "{}", stderr(&out));
    let st = status(&sb);
    assert_eq!(st[&l.name]["interpreter_ok"], false);
}

#[test]
fn pick_and_run_use_a_handler_registered_from_a_container() {
    use support::registry::{ImageSpec, Registry, RegistryAuth, push_image};
    require_sandbox!();
    let (platform, arch) = if cfg!(target_arch = "aarch64") {
        ("linux/amd64", "x86_64")
    } else {
        ("linux/arm64", "aarch64")
    };
    let emulator = format!("/usr/bin/qemu-{arch}-static");
    skip_unless!(Path::new(&emulator).exists(), "{emulator} not installed");
    let sb = Sandbox::mounted();
    // Registered with F from a mount namespace where the emulator is at /mnt/NAME (a
    // directory bind-mounted over /mnt there); that path does not exist here.
    let name = format!("archctl-wild-qemu-{arch}");
    let rule = archctl::arch::Table::builtin().get(arch).unwrap();
    let esc = archctl::arch::escape_bytes;
    let line = format!(
        ":qemu-{arch}:M::{}:{}:/mnt/{name}:F",
        esc(&rule.magic),
        esc(&rule.mask)
    );
    register_from_container(&sb, "/mnt", &[(name, emulator.clone())], &[line]);
    let reg = Registry::start(RegistryAuth::None);
    let p = push_image(&reg, "wild/foreign", "v1", ImageSpec::oci(platform));
    let r = p.reference(&reg.addr());
    let cache = sb.tmp.path().join("cache");
    let archctl = |args: &[&str]| {
        sb.command(support::ARCHCTL)
            .arg("--binfmt-dir")
            .arg(&sb.dir)
            .args(args)
            .env("ARCHCTL_RUNTIME_DIR", sb.runtime_dir())
            .registry_isolated(&cache, &cache)
            .env("ARCHCTL_ENGINE", "podman")
            .output()
            .unwrap()
    };
    let out = archctl(&["--json", "pick", &r]);
    assert!(out.status.success(), "pick: {}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "emulated");
    let reason = v["candidates"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("qemu-{arch}")) && reason.contains("registered"),
        "{reason}"
    );
    // run never registers over it: nothing to enable first.
    let out = archctl(&["run", "--dry-run", "--rm", &r]);
    assert!(out.status.success(), "run: {}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("podman run --platform {platform} --rm {r}\n")
    );
}
