//! What archctl ships as a package: shell completions and the man page generated from
//! the clap definitions, the systemd unit, and the .deb that packaging/build-deb.sh
//! builds (here for the host's architecture, from the test binary), looked at with
//! dpkg-deb and unpacked into a temporary root with `dpkg-deb -x` — never installed:
//! the host's dpkg database, /etc and /usr are not touched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use support::{ARCHCTL, RunExt, assert_code, assert_error_line, stderr, stdout};

/// Commands every completion script must offer.
const COMMANDS: &[&str] = &[
    "enable",
    "disable",
    "status",
    "boot",
    "service",
    "completions",
];

#[test]
fn completions_for_each_shell_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(ARCHCTL).args(["completions", shell]).run();
        assert_code(&out, 0);
        let text = stdout(&out);
        assert!(text.len() > 1000, "{shell}: {} bytes", text.len());
        for c in COMMANDS {
            assert!(text.contains(c), "{shell}: no {c} in the script");
        }
        // Options of a subcommand come from the same definitions.
        assert!(text.contains("emulator-dir"), "{shell}: no --emulator-dir");
        assert!(stderr(&out).is_empty(), "{shell}: {}", out.shown());
    }
}

/// Each script is valid for its shell (when that shell is installed here).
#[test]
fn completion_scripts_parse_in_their_shells() {
    for (shell, check) in [("bash", "-n"), ("zsh", "-n"), ("fish", "--no-execute")] {
        if Command::new(shell)
            .arg("-c")
            .arg("exit 0")
            .output()
            .is_err()
        {
            eprintln!("{shell} not installed: its script is not parsed");
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("archctl.{shell}"));
        let out = Command::new(ARCHCTL).args(["completions", shell]).run();
        std::fs::write(&file, &out.stdout).unwrap();
        let parsed = Command::new(shell).arg(check).arg(&file).run();
        assert_code(&parsed, 0);
    }
    // bash: sourcing it registers the completion function for archctl.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archctl.bash");
    let out = Command::new(ARCHCTL).args(["completions", "bash"]).run();
    std::fs::write(&file, &out.stdout).unwrap();
    let script = format!("source {} && complete -p archctl", file.display());
    let bash = Command::new("bash").args(["-c", &script]).run();
    assert_code(&bash, 0);
    assert!(stdout(&bash).contains("archctl"), "{}", bash.shown());
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    for bad in [&["completions", "tcsh"][..], &["completions"]] {
        let out = Command::new(ARCHCTL).args(bad).run();
        assert_code(&out, 2);
        assert!(stdout(&out).is_empty(), "{}", out.shown());
    }
    let out = Command::new(ARCHCTL).args(["completions", "tcsh"]).run();
    assert_error_line(&out, "tcsh");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 2, "one error line and a hint: {err}");
    assert!(err.lines().nth(1).unwrap().starts_with("hint: "), "{err}");
}

#[test]
fn the_man_page_is_roff_with_every_command() {
    let out = Command::new(ARCHCTL).arg("man").run();
    assert_code(&out, 0);
    let page = stdout(&out);
    // roff's preamble (the \*(Aq string), once, then the title.
    assert!(
        page.lines()
            .take(3)
            .any(|l| l.starts_with(".TH archctl 1 ")),
        "{}",
        &page[..200.min(page.len())]
    );
    assert_eq!(page.matches(".ds Aq").count(), 2, "the preamble once");
    for section in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "COMMANDS",
        "\"EXIT STATUS\"",
        "FILES",
    ] {
        assert!(
            page.lines().any(|l| l == format!(".SH {section}")),
            "no .SH {section}"
        );
    }
    for c in [
        "ENABLE",
        "SERVICE",
        "SERVICE INSTALL",
        "EMULATORS INSTALL",
        "COMPLETIONS",
    ] {
        assert!(
            page.contains(&format!(".SH \"ARCHCTL {c}\"")),
            "no section for archctl {}",
            c.to_lowercase()
        );
    }
    // An option of a nested command is described in its section.
    assert!(
        page.contains("sha256"),
        "emulators install --sha256 missing"
    );
    // Hidden commands stay out of the page.
    assert!(
        !page.contains("ARCHCTL MAN"),
        "the hidden man command is listed"
    );
    // No references to pages that do not exist (clap_mangen's archctl-enable(1)).
    assert!(
        !page.contains("archctl\\-enable(1)"),
        "dangling page reference"
    );
    // groff reads it without a warning.
    match Command::new("groff").args(["-man", "-ww", "-z"]).output() {
        Err(_) => eprintln!("groff not installed: the page is not typeset"),
        Ok(_) => {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("archctl.1");
            std::fs::write(&file, &page).unwrap();
            let groff = Command::new("groff")
                .args(["-man", "-ww", "-z"])
                .arg(&file)
                .run();
            assert_code(&groff, 0);
            assert!(stderr(&groff).is_empty(), "{}", groff.shown());
        }
    }
}

/// `service unit` prints exactly the unit `service install` writes.
#[test]
fn the_printed_unit_is_the_installed_one() {
    let root = tempfile::tempdir().unwrap();
    let bin = "/usr/bin/archctl";
    let install = Command::new(ARCHCTL)
        .args([
            "service", "install", "--init", "systemd", "--binary", bin, "--root",
        ])
        .arg(root.path())
        .run();
    assert_code(&install, 0);
    let written =
        std::fs::read_to_string(root.path().join("etc/systemd/system/archctl.service")).unwrap();
    let out = Command::new(ARCHCTL)
        .args(["service", "unit", "--binary", bin])
        .run();
    assert_code(&out, 0);
    assert_eq!(stdout(&out), written);
    assert!(
        written.contains("ExecStart=/usr/bin/archctl boot"),
        "{written}"
    );
}

/// The Debian architecture of this host.
fn deb_arch() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Some("amd64"),
        "aarch64" => Some("arm64"),
        _ => None,
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Files the package must hold (besides directories).
const FILES: &[&str] = &[
    "./usr/bin/archctl",
    "./usr/lib/systemd/system/archctl.service",
    "./usr/share/bash-completion/completions/archctl",
    "./usr/share/zsh/vendor-completions/_archctl",
    "./usr/share/fish/vendor_completions.d/archctl.fish",
    "./usr/share/man/man1/archctl.1.gz",
    "./etc/archctl/config.toml",
    "./usr/share/doc/archctl/copyright",
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let out = Command::new("dpkg-deb").args(args).arg(deb).run();
    assert_code(&out, 0);
    stdout(&out)
}

#[test]
fn the_deb_holds_the_binary_unit_completions_man_page_and_conffile() {
    let arch = deb_arch();
    skip_unless!(
        arch.is_some(),
        "no Debian package for {}",
        std::env::consts::ARCH
    );
    let arch = arch.unwrap_or_default();
    skip_unless!(have("dpkg-deb"), "dpkg-deb not installed");
    skip_unless!(
        have("cargo-deb"),
        "cargo-deb not installed (cargo install --locked cargo-deb --version 3.8.0)"
    );
    let out_dir = tempfile::tempdir().unwrap();
    // The test binary (a debug build), stripped, quick compression: the package's
    // shape is what is tested, not the release binary.
    let build = Command::new("bash")
        .arg(manifest_dir().join("packaging/build-deb.sh"))
        .args(["--binary", ARCHCTL, "--strip", "--fast", "--output"])
        .arg(out_dir.path())
        .arg(arch)
        .run();
    assert_code(&build, 0);
    let debs: Vec<PathBuf> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    let deb = &debs[0];
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        name,
        format!("archctl_{}-1_{arch}.deb", env!("CARGO_PKG_VERSION"))
    );

    // Control fields.
    let field = |f: &str| {
        dpkg_deb(&["-f"], deb)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{f}: ")).map(str::to_string))
    };
    assert_eq!(field("Package").as_deref(), Some("archctl"));
    assert_eq!(field("Architecture").as_deref(), Some(arch));
    assert_eq!(
        field("Version"),
        Some(format!("{}-1", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(field("Recommends").as_deref(), Some("qemu-user-static"));
    let description = field("Description").unwrap_or_default();
    assert!(
        !description.is_empty() && description.len() <= 80,
        "the synopsis is one short line: {description:?}"
    );
    let info = dpkg_deb(&["-I"], deb);
    for member in ["conffiles", "postinst", "prerm", "postrm"] {
        assert!(
            info.contains(member),
            "no {member} in the control archive:\n{info}"
        );
    }

    // The file list.
    let list = dpkg_deb(&["-c"], deb);
    let paths: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    for f in FILES {
        assert!(paths.contains(f), "{f} not in the package:\n{list}");
    }
    // Every file root-owned, nothing outside /usr and /etc.
    for l in list.lines() {
        assert!(l.contains(" 0/0 "), "not root-owned: {l}");
    }
    for p in &paths {
        assert!(
            p.starts_with("./usr/") || p.starts_with("./etc/") || *p == "./",
            "{p}: outside /usr and /etc"
        );
    }

    // The control archive: conffiles and maintainer scripts.
    let control = tempfile::tempdir().unwrap();
    let ctrl = control.path().join("DEBIAN");
    let e = Command::new("dpkg-deb").arg("-e").arg(deb).arg(&ctrl).run();
    assert_code(&e, 0);
    assert_eq!(
        std::fs::read_to_string(ctrl.join("conffiles")).unwrap(),
        "/etc/archctl/config.toml\n"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let p = ctrl.join(script);
        let mode = std::fs::metadata(&p).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o755,
            "{script}"
        );
        let check = Command::new("sh").arg("-n").arg(&p).run();
        assert_code(&check, 0);
        if have("shellcheck") {
            let sc = Command::new("shellcheck").arg(&p).run();
            assert_code(&sc, 0);
        }
    }
    maintainer_scripts_call_the_debian_helpers(&ctrl);

    // Unpacked into a temporary root (never installed).
    let root = tempfile::tempdir().unwrap();
    let x = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(root.path())
        .run();
    assert_code(&x, 0);
    let r = root.path();
    let bin = r.join("usr/bin/archctl");
    let version = Command::new(&bin).arg("--version").run();
    assert_code(&version, 0);
    assert!(stdout(&version).contains(env!("CARGO_PKG_VERSION")));
    // The unit is the one `service install` writes, running /usr/bin/archctl.
    let unit = std::fs::read_to_string(r.join("usr/lib/systemd/system/archctl.service")).unwrap();
    let printed = Command::new(ARCHCTL)
        .args(["service", "unit", "--binary", "/usr/bin/archctl"])
        .run();
    assert_eq!(unit, stdout(&printed));
    // The completions are the binary's own.
    let bash = std::fs::read(r.join("usr/share/bash-completion/completions/archctl")).unwrap();
    let generated = Command::new(ARCHCTL).args(["completions", "bash"]).run();
    assert_eq!(bash, generated.stdout);
    // The man page, gzipped.
    let gz = std::fs::read(r.join("usr/share/man/man1/archctl.1.gz")).unwrap();
    let mut page = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut page).unwrap();
    assert!(
        page.lines()
            .take(3)
            .any(|l| l.starts_with(".TH archctl 1 "))
    );
    // The conffile is `config init`'s default, and archctl reads it.
    let config = r.join("etc/archctl/config.toml");
    let show = Command::new(ARCHCTL)
        .arg("--config")
        .arg(&config)
        .args(["--json", "config", "show"])
        .run();
    assert_code(&show, 0);
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["binfmt"]["architectures"], "all", "{shown}");

    // `service status` in that root: the package's unit, not enabled until
    // deb-systemd-helper links it, then installed and up to date.
    let status = |r: &Path| {
        let out = Command::new(ARCHCTL)
            .args(["--json", "service", "status", "--init", "systemd"])
            .args(["--binary", "/usr/bin/archctl", "--root"])
            .arg(r)
            .run();
        assert_code(&out, 0);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let s = status(r);
    assert_eq!(s["packaged"], true, "{s}");
    assert_eq!(s["installed"], false, "{s}");
    let wants = r.join("etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(
        "/usr/lib/systemd/system/archctl.service",
        wants.join("archctl.service"),
    )
    .unwrap();
    let s = status(r);
    assert_eq!(
        (&s["installed"], &s["up_to_date"], &s["packaged"]),
        (&true.into(), &true.into(), &true.into()),
        "{s}"
    );
}

/// The maintainer scripts, run with stub deb-systemd-helper, deb-systemd-invoke and
/// systemctl first on PATH that record their arguments (nothing real is called; purge,
/// which removes /var/cache/archctl, is not run): enable on configure, stop on remove,
/// mask on remove, never a word on stdout or stderr. Whether systemd runs here decides
/// which calls happen.
fn maintainer_scripts_call_the_debian_helpers(ctrl: &Path) {
    let stubs = tempfile::tempdir().unwrap();
    let log = stubs.path().join("calls");
    for tool in ["deb-systemd-helper", "deb-systemd-invoke", "systemctl"] {
        let p = stubs.path().join(tool);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho \"{tool} $*\" >> '{}'\n", log.display()),
        )
        .unwrap();
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&p, perm).unwrap();
    }
    let path = format!("{}:/usr/bin:/bin", stubs.path().display());
    let systemd = Path::new("/run/systemd/system").is_dir();
    let run = |script: &str, args: &[&str]| {
        let _ = std::fs::remove_file(&log);
        let out = Command::new("sh")
            .arg(ctrl.join(script))
            .args(args)
            .env("PATH", &path)
            .run();
        assert_code(&out, 0);
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "{}",
            out.shown()
        );
        std::fs::read_to_string(&log).unwrap_or_default()
    };
    // A first install: was-enabled says yes (as deb-systemd-helper does for a unit it
    // has no state for), so the unit is enabled.
    let calls = run("postinst", &["configure"]);
    assert!(
        calls.contains("deb-systemd-helper unmask archctl.service"),
        "{calls}"
    );
    assert!(
        calls.contains("deb-systemd-helper --quiet was-enabled archctl.service"),
        "{calls}"
    );
    assert!(
        calls.contains("deb-systemd-helper enable archctl.service"),
        "{calls}"
    );
    assert_eq!(
        calls.contains("systemctl --system daemon-reload"),
        systemd,
        "{calls}"
    );
    assert_eq!(
        calls.contains("deb-systemd-invoke start archctl.service"),
        systemd,
        "{calls}"
    );
    let calls = run("prerm", &["remove"]);
    assert_eq!(
        calls.contains("deb-systemd-invoke stop archctl.service"),
        systemd,
        "{calls}"
    );
    assert!(!calls.contains("deb-systemd-helper"), "{calls}");
    let calls = run("prerm", &["upgrade", "0.1.0-1"]);
    assert!(calls.is_empty(), "upgrade stops nothing: {calls}");
    let calls = run("postrm", &["remove"]);
    assert!(
        calls.contains("deb-systemd-helper mask archctl.service"),
        "{calls}"
    );
    assert!(!calls.contains("purge"), "{calls}");
    let calls = run("postrm", &["upgrade", "0.1.0-1"]);
    assert!(calls.is_empty(), "upgrade changes nothing: {calls}");
}
