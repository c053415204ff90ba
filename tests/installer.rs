//! guest-installer/install.sh: shellcheck, and every run into a temporary root
//! (`--root`) or with `--dry-run`, with stub package managers first on PATH that only
//! record their arguments. Nothing here changes this machine or installs a package.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::RunExt;

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use support::{ARCHCTL, FakeServer, assert_code, stderr, stdout};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/guest-installer/install.sh");

const DEBIAN_OS_RELEASE: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION_CODENAME=bookworm
ID=debian
"#;
const ALPINE_OS_RELEASE: &str = r#"NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.20.3
PRETTY_NAME="Alpine Linux v3.20"
"#;
const FEDORA_OS_RELEASE: &str = r#"NAME="Fedora Linux"
VERSION="40 (Container Image)"
ID=fedora
VERSION_ID=40
PRETTY_NAME="Fedora Linux 40 (Container Image)"
"#;
const ROCKY_OS_RELEASE: &str = r#"NAME="Rocky Linux"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.4"
PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"
"#;

/// What the Alpine path installs, in the script's order.
const ALPINE_PACKAGES: &str =
    "qemu-x86_64 qemu-aarch64 qemu-arm qemu-riscv64 qemu-s390x qemu-ppc64le qemu-i386";

/// The host's os-release when it is Debian's (as in CI), else a Debian 12 one.
fn debian_os_release() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .filter(|t| t.lines().any(|l| l == "ID=debian"))
        .unwrap_or_else(|| DEBIAN_OS_RELEASE.to_string())
}

/// A temporary root with an os-release, stub package managers, and a TMPDIR of its own
/// (outside the root) that must be empty again after every run.
struct Guest {
    dir: tempfile::TempDir,
}

impl Guest {
    fn new(os_release: Option<&str>) -> Guest {
        let dir = tempfile::tempdir().unwrap();
        let g = Guest { dir };
        std::fs::create_dir_all(g.root().join("etc")).unwrap();
        if let Some(text) = os_release {
            std::fs::write(g.root().join("etc/os-release"), text).unwrap();
        }
        std::fs::create_dir_all(g.stubs()).unwrap();
        std::fs::create_dir_all(g.tmp()).unwrap();
        let log = g.calls_file();
        for tool in ["apt-get", "apk", "dnf", "yum", "systemctl", "rc-update"] {
            let path = g.stubs().join(tool);
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexit 0\n",
                    log.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        g
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn stubs(&self) -> PathBuf {
        self.dir.path().join("stubs")
    }

    fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    fn calls_file(&self) -> PathBuf {
        self.dir.path().join("calls")
    }

    /// What the stub package managers were called with, one line each.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.calls_file())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn clear_calls(&self) {
        let _ = std::fs::remove_file(self.calls_file());
    }

    /// install.sh with the stubs first on PATH; `--root` unless `live_dry_run`.
    fn command(&self, args: &[&str]) -> Command {
        let path = format!(
            "{}:{}",
            self.stubs().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new("sh");
        c.arg(SCRIPT)
            .args(args)
            .env("PATH", path)
            .env("TMPDIR", self.tmp())
            .env_remove("ARCHCTL_CONFIG")
            .stdin(Stdio::null());
        c
    }

    /// install.sh --root ROOT ARGS.
    fn install(&self, args: &[&str]) -> support::Run {
        let root = self.root();
        let mut a = vec!["--root", root.to_str().unwrap()];
        a.extend_from_slice(args);
        let out = self.command(&a).run();
        self.assert_tmp_clean(&out);
        out
    }

    #[track_caller]
    fn assert_tmp_clean(&self, out: &Output) {
        let left: Vec<_> = std::fs::read_dir(self.tmp())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            left.is_empty(),
            "temporary files left behind: {left:?}\n{}",
            support::shown(out)
        );
    }

    fn snapshot(&self) -> BTreeMap<String, String> {
        snapshot(&self.root())
    }
}

/// Every path under `root`: files as mode and sha256, links as target, dirs as "dir".
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    support::tree_snapshot(root, |p| {
        support::registry::sha256_hex(&std::fs::read(p).unwrap())
    })
}

/// What install.sh could touch on this machine if it ignored `--root`: existence, size
/// and modification time of each path.
fn host_state() -> Vec<(String, Option<(u64, std::time::SystemTime)>)> {
    [
        "/usr/local/bin/archctl",
        "/etc/archctl",
        "/etc/archctl/config.toml",
        "/etc/systemd/system/archctl.service",
        "/etc/systemd/system/multi-user.target.wants/archctl.service",
        "/etc/init.d/archctl",
        "/etc/runlevels/default/archctl",
        "/etc/rc.local",
        "/var/lib/archctl",
        "/var/lib/archctl/service-install.json",
    ]
    .iter()
    .map(|p| {
        let m = std::fs::symlink_metadata(p).ok();
        (p.to_string(), m.map(|m| (m.len(), m.modified().unwrap())))
    })
    .collect()
}

fn archctl_bytes() -> Vec<u8> {
    std::fs::read(ARCHCTL).unwrap()
}

/// The `+ ` command lines of a run.
fn plus_lines(o: &Output) -> Vec<String> {
    stdout(o)
        .lines()
        .filter(|l| l.starts_with("+ "))
        .map(str::to_string)
        .collect()
}

/// The error contract: one `install.sh: error: ` line on stderr mentioning `needle`.
#[track_caller]
fn assert_install_error(o: &impl support::Outcome, needle: &str) {
    let err = stderr(o.output());
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("install.sh: error: "))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one error line expected:\n{}",
        support::shown(o)
    );
    assert!(
        lines[0].contains(needle),
        "error line {:?} does not mention {needle:?}\n{}",
        lines[0],
        support::shown(o)
    );
}

#[test]
fn shellcheck_passes() {
    let out = Command::new("shellcheck").arg(SCRIPT).output();
    skip_unless!(
        !matches!(&out, Err(e) if e.kind() == std::io::ErrorKind::NotFound),
        "shellcheck not installed (apt-get install -y shellcheck)"
    );
    let out = out.unwrap_or_else(|e| panic!("shellcheck: {e}"));
    assert_code(&out, 0);
    let text = std::fs::read_to_string(SCRIPT).unwrap();
    assert!(text.starts_with("#!/bin/sh\n"), "POSIX sh shebang");
    assert!(text.lines().any(|l| l == "set -eu"), "set -eu");
}

#[test]
fn debian_root_gets_binary_config_and_each_service_idempotently() {
    let host_before = host_state();
    let os_release = debian_os_release();
    for init in ["systemd", "openrc", "sysv"] {
        let g = Guest::new(Some(&os_release));
        let before = g.snapshot();
        let out = g.install(&["--binary", ARCHCTL, "--init", init]);
        assert_code(&out, 0);
        let text = stdout(&out);
        assert!(
            text.contains("apt-get cannot install into another root"),
            "{init}: says why the packages are skipped:\n{}",
            support::shown(&out)
        );
        assert!(g.calls().is_empty(), "{init}: {:?}", g.calls());

        let root = g.root();
        let bin = root.join("usr/local/bin/archctl");
        assert_eq!(std::fs::read(&bin).unwrap(), archctl_bytes(), "{init}");
        let mode = std::fs::metadata(&bin).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755, "{init}: binary mode");
        let config = std::fs::read_to_string(root.join("etc/archctl/config.toml")).unwrap();
        assert!(
            config.contains("[binfmt]") && config.contains("architectures = \"all\""),
            "{init}: default config: {config}"
        );
        assert!(config.contains("force = false"), "{init}: {config}");

        let once = g.snapshot();
        let mut expected: Vec<&str> = vec![
            "etc/os-release",
            "etc/archctl/config.toml",
            "usr/local/bin/archctl",
            "var/lib/archctl/service-install.json",
            "usr/local/share/bash-completion/completions/archctl",
            "usr/local/share/zsh/site-functions/_archctl",
            "usr/local/share/fish/vendor_completions.d/archctl.fish",
            "usr/local/share/man/man1/archctl.1",
        ];
        match init {
            "systemd" => {
                let unit = std::fs::read_to_string(root.join("etc/systemd/system/archctl.service"))
                    .unwrap();
                assert!(
                    unit.contains("ExecStart=/usr/local/bin/archctl boot"),
                    "{unit}"
                );
                assert_eq!(
                    once["etc/systemd/system/multi-user.target.wants/archctl.service"],
                    "-> /etc/systemd/system/archctl.service"
                );
                expected.extend([
                    "etc/systemd/system/archctl.service",
                    "etc/systemd/system/multi-user.target.wants/archctl.service",
                ]);
            }
            "openrc" => {
                let script = std::fs::read_to_string(root.join("etc/init.d/archctl")).unwrap();
                assert!(script.starts_with("#!/sbin/openrc-run"), "{script}");
                assert!(script.contains("/usr/local/bin/archctl boot"), "{script}");
                assert_eq!(
                    once["etc/runlevels/default/archctl"],
                    "-> /etc/init.d/archctl"
                );
                expected.extend(["etc/init.d/archctl", "etc/runlevels/default/archctl"]);
            }
            _ => {
                let rc = std::fs::read_to_string(root.join("etc/rc.local")).unwrap();
                assert!(rc.contains("/usr/local/bin/archctl boot"), "{rc}");
                expected.push("etc/rc.local");
            }
        }
        // Exactly these files and links, plus their directories: no temporary names.
        let mut files: Vec<&str> = once
            .iter()
            .filter(|(_, v)| *v != "dir")
            .map(|(k, _)| k.as_str())
            .collect();
        files.sort();
        expected.sort();
        assert_eq!(files, expected, "{init}: files in the root");
        assert!(before.len() < once.len());
        // The completions and the page are what the binary prints.
        let bash = std::fs::read(root.join("usr/local/share/bash-completion/completions/archctl"))
            .unwrap();
        let printed = Command::new(ARCHCTL)
            .args(["completions", "bash"])
            .output()
            .unwrap();
        assert_eq!(bash, printed.stdout, "{init}: bash completions");
        let page =
            std::fs::read_to_string(root.join("usr/local/share/man/man1/archctl.1")).unwrap();
        assert!(page.contains(".TH archctl 1 "), "{init}: man page");

        // Again: nothing changes, and it says so.
        let out = g.install(&["--binary", ARCHCTL, "--init", init]);
        assert_code(&out, 0);
        assert_eq!(g.snapshot(), once, "{init}: second run changed the root");
        let text = stdout(&out);
        for what in [
            "archctl binary: already in place",
            "config: already in place",
            "boot service: already in place",
            "completions and man page: already in place",
            "done: everything was already in place",
        ] {
            assert!(
                text.contains(what),
                "{init}: no {what:?}:\n{}",
                support::shown(&out)
            );
        }
        assert!(
            plus_lines(&out).is_empty(),
            "{init}: {:?}",
            plus_lines(&out)
        );
        assert!(g.calls().is_empty(), "{init}: {:?}", g.calls());
    }
    assert_eq!(
        host_state(),
        host_before,
        "something outside the roots changed"
    );
}

#[test]
fn an_existing_config_is_never_overwritten() {
    let g = Guest::new(Some(&debian_os_release()));
    let config = g.root().join("etc/archctl/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let mine = "# mine\n[binfmt]\narchitectures = [\"x86_64\"]\n";
    std::fs::write(&config, mine).unwrap();
    for extra in [&[][..], &["--force"][..]] {
        let mut args = vec!["--binary", ARCHCTL, "--init", "sysv"];
        args.extend_from_slice(extra);
        let out = g.install(&args);
        assert_code(&out, 0);
        assert_eq!(std::fs::read_to_string(&config).unwrap(), mine);
        assert!(
            stdout(&out).contains("config: already in place"),
            "{}",
            support::shown(&out)
        );
        assert_eq!(
            stdout(&out).contains("note: --force is not written into an existing config"),
            !extra.is_empty(),
            "{}",
            support::shown(&out)
        );
    }
    // A config this run writes gets force = true with --force.
    let g = Guest::new(Some(&debian_os_release()));
    let out = g.install(&["--binary", ARCHCTL, "--init", "sysv", "--force"]);
    assert_code(&out, 0);
    let text = std::fs::read_to_string(g.root().join("etc/archctl/config.toml")).unwrap();
    assert!(
        text.contains("\nforce = true\n") && !text.contains("force = false"),
        "{text}"
    );
}

#[test]
fn alpine_installs_its_static_qemu_packages_with_apk_root() {
    let g = Guest::new(Some(ALPINE_OS_RELEASE));
    // An OpenRC root: --init auto must find it.
    std::fs::create_dir_all(g.root().join("sbin")).unwrap();
    std::fs::write(g.root().join("sbin/openrc-run"), "").unwrap();
    let out = g.install(&["--binary", ARCHCTL]);
    assert_code(&out, 0);
    let root = g.root().display().to_string();
    assert_eq!(
        g.calls(),
        vec![format!(
            "apk --root {root} add --no-cache {ALPINE_PACKAGES}"
        )],
        "{}",
        support::shown(&out)
    );
    assert!(
        plus_lines(&out).contains(&format!(
            "+ apk --root {root} add --no-cache {ALPINE_PACKAGES}"
        )),
        "{}",
        support::shown(&out)
    );
    assert!(
        g.root().join("etc/init.d/archctl").exists(),
        "openrc chosen"
    );
    assert!(g.root().join("etc/runlevels/default/archctl").is_symlink());
    assert_eq!(
        std::fs::read(g.root().join("usr/local/bin/archctl")).unwrap(),
        archctl_bytes()
    );

    // Emulators present: no package manager call at all.
    std::fs::create_dir_all(g.root().join("usr/bin")).unwrap();
    for p in ALPINE_PACKAGES.split(' ') {
        std::fs::write(g.root().join("usr/bin").join(p), "").unwrap();
    }
    g.clear_calls();
    let once = g.snapshot();
    let out = g.install(&["--binary", ARCHCTL]);
    assert_code(&out, 0);
    assert!(g.calls().is_empty(), "{:?}", g.calls());
    assert!(stdout(&out).contains("emulators: already installed"));
    assert!(stdout(&out).contains("done: everything was already in place"));
    assert_eq!(g.snapshot(), once);
}

#[test]
fn fedora_and_rhel_likes_use_dnf_installroot() {
    for os_release in [FEDORA_OS_RELEASE, ROCKY_OS_RELEASE] {
        let g = Guest::new(Some(os_release));
        let out = g.install(&["--binary", ARCHCTL, "--init", "systemd"]);
        assert_code(&out, 0);
        let root = g.root().display().to_string();
        assert_eq!(
            g.calls(),
            vec![format!(
                "dnf --installroot={root} install -y qemu-user-static"
            )],
            "{}",
            support::shown(&out)
        );
        assert!(g.root().join("etc/systemd/system/archctl.service").exists());
        // Emulators present: dnf is not called again.
        std::fs::create_dir_all(g.root().join("usr/bin")).unwrap();
        for a in [
            "x86_64", "aarch64", "arm", "riscv64", "s390x", "ppc64le", "i386",
        ] {
            std::fs::write(g.root().join(format!("usr/bin/qemu-{a}-static")), "").unwrap();
        }
        g.clear_calls();
        let out = g.install(&["--binary", ARCHCTL, "--init", "systemd"]);
        assert_code(&out, 0);
        assert!(g.calls().is_empty(), "{:?}", g.calls());
        assert!(stdout(&out).contains("done: everything was already in place"));
    }
}

#[test]
fn no_emulators_skips_the_package_manager() {
    let g = Guest::new(Some(ALPINE_OS_RELEASE));
    let out = g.install(&["--binary", ARCHCTL, "--no-emulators", "--init", "sysv"]);
    assert_code(&out, 0);
    assert!(g.calls().is_empty(), "{:?}", g.calls());
    assert!(stdout(&out).contains("emulators: skipped (--no-emulators)"));
    assert!(g.root().join("etc/rc.local").exists());
}

#[test]
fn dry_run_prints_the_steps_and_changes_nothing() {
    let host_before = host_state();
    let g = Guest::new(Some(ALPINE_OS_RELEASE));
    let before = g.snapshot();
    let out = g.install(&["--binary", ARCHCTL, "--init", "openrc", "--dry-run"]);
    assert_code(&out, 0);
    assert_eq!(g.snapshot(), before, "dry run changed the root");
    assert!(g.calls().is_empty(), "{:?}", g.calls());
    let root = g.root().display().to_string();
    let lines = plus_lines(&out);
    let starts = [
        format!("+ apk --root {root} add --no-cache {ALPINE_PACKAGES}"),
        format!("+ mkdir -p {root}/usr/local/bin"),
        format!("+ cp {ARCHCTL} {root}/usr/local/bin/.archctl.new."),
        format!("+ mv -f {root}/usr/local/bin/.archctl.new."),
        format!(
            "+ {root}/usr/local/bin/archctl config init --output {root}/etc/archctl/config.toml"
        ),
        format!(
            "+ {root}/usr/local/bin/archctl service install --root {root} --init openrc --binary /usr/local/bin/archctl"
        ),
        format!(
            "+ {root}/usr/local/bin/archctl completions bash > {root}/usr/local/share/bash-completion/completions/archctl"
        ),
        format!("+ {root}/usr/local/bin/archctl man > {root}/usr/local/share/man/man1/archctl.1"),
    ];
    for s in &starts {
        assert!(
            lines.iter().any(|l| l.starts_with(s.as_str())),
            "no line starting {s:?} in {lines:#?}"
        );
    }
    assert!(
        !lines.iter().any(|l| l.contains(" enable ")),
        "no enable with --root: {lines:#?}"
    );

    // On this machine's own root: only printed, the enable and status included.
    let out = g
        .command(&["--binary", ARCHCTL, "--dry-run", "--no-emulators"])
        .run();
    assert_code(&out, 0);
    g.assert_tmp_clean(&out);
    let lines = plus_lines(&out);
    assert!(
        lines.contains(
            &"+ /usr/local/bin/archctl --config /etc/archctl/config.toml boot".to_string()
        ),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&"+ /usr/local/bin/archctl status".to_string()),
        "{lines:#?}"
    );
    assert!(stdout(&out).contains("dry run done: nothing was changed"));
    assert!(g.calls().is_empty(), "{:?}", g.calls());
    assert_eq!(host_state(), host_before, "dry run changed this machine");
}

#[test]
fn url_needs_sha256() {
    let g = Guest::new(Some(ALPINE_OS_RELEASE));
    let before = g.snapshot();
    let out = g.install(&["--url", "http://127.0.0.1:9/archctl"]);
    assert_code(&out, 2);
    assert_install_error(&out, "--url needs --sha256");
    assert_eq!(g.snapshot(), before);
    assert!(g.calls().is_empty());

    for bad in ["abc", &"g".repeat(64)] {
        let out = g.install(&["--url", "http://127.0.0.1:9/archctl", "--sha256", bad]);
        assert_code(&out, 2);
        assert_install_error(&out, "64 hexadecimal digits");
    }
    assert_eq!(g.snapshot(), before);
}

#[test]
fn url_download_is_checked_before_anything_is_installed() {
    let bytes = archctl_bytes();
    let sha = support::registry::sha256_hex(&bytes);
    let srv = FakeServer::start(move |path, _| match path {
        "/archctl" => (200, vec![], bytes.clone()),
        _ => (404, vec![], b"not found".to_vec()),
    });
    let url = format!("http://{}/archctl", srv.addr);
    // Alpine: a package install would show up in the stub log if it came first.
    let g = Guest::new(Some(ALPINE_OS_RELEASE));
    let before = g.snapshot();

    // A dry run downloads nothing.
    let out = g.install(&["--url", &url, "--sha256", &sha, "--dry-run"]);
    assert_code(&out, 0);
    assert!(
        plus_lines(&out)
            .iter()
            .any(|l| l.starts_with("+ curl ") && l.ends_with(&url)),
        "{}",
        support::shown(&out)
    );
    assert_eq!(srv.seen.lock().unwrap().len(), 0, "dry run downloaded");
    assert_eq!(g.snapshot(), before);

    let wrong = "0".repeat(64);
    let out = g.install(&["--url", &url, "--sha256", &wrong, "--init", "sysv"]);
    assert_code(&out, 1);
    assert_install_error(&out, "sha256 mismatch");
    assert!(stderr(&out).contains(&sha), "names the actual checksum");
    assert_eq!(g.snapshot(), before, "a bad download changed the root");
    assert!(g.calls().is_empty(), "{:?}", g.calls());

    let missing = format!("http://{}/nope", srv.addr);
    let out = g.install(&["--url", &missing, "--sha256", &sha, "--init", "sysv"]);
    assert_code(&out, 1);
    assert_install_error(&out, "command failed");
    assert_eq!(g.snapshot(), before);
    assert!(g.calls().is_empty(), "{:?}", g.calls());

    // Upper-case hex is the same checksum.
    let out = g.install(&[
        "--url",
        &url,
        "--sha256",
        &sha.to_uppercase(),
        "--init",
        "sysv",
    ]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("matches"), "{}", support::shown(&out));
    assert_eq!(
        std::fs::read(g.root().join("usr/local/bin/archctl")).unwrap(),
        archctl_bytes()
    );
    assert!(g.root().join("etc/archctl/config.toml").exists());
    assert!(g.root().join("etc/rc.local").exists());
    assert_eq!(g.calls().len(), 1, "{:?}", g.calls());
    assert!(g.calls()[0].starts_with("apk --root"));
    let seen = srv.seen.lock().unwrap().len();
    assert!(seen >= 3, "downloads went to the local server: {seen}");
}

#[test]
fn unknown_distribution_fails_clearly_unless_no_emulators() {
    for os_release in [Some("ID=gentoo\nNAME=Gentoo\n"), None] {
        let g = Guest::new(os_release);
        let before = g.snapshot();
        let out = g.install(&["--binary", ARCHCTL]);
        assert_code(&out, 1);
        assert_install_error(&out, "unsupported distribution");
        assert_install_error(&out, "--no-emulators");
        assert_eq!(g.snapshot(), before);
        assert!(g.calls().is_empty(), "{:?}", g.calls());

        let out = g.install(&["--binary", ARCHCTL, "--no-emulators", "--init", "sysv"]);
        assert_code(&out, 0);
        assert!(g.root().join("usr/local/bin/archctl").exists());
    }
}

#[test]
fn usage_errors_are_one_line() {
    let g = Guest::new(Some(ALPINE_OS_RELEASE));
    let before = g.snapshot();
    for (args, code, needle) in [
        (&["--bogus"][..], 2, "unknown option: --bogus"),
        (&["--init", "upstart"][..], 2, "--init must be"),
        (&["--prefix", "usr/bin"][..], 2, "absolute"),
        (&["--binary"][..], 2, "--binary needs a value"),
        (
            &["--binary", "/x", "--url", "http://127.0.0.1:9/x"][..],
            2,
            "exclude each other",
        ),
        (&["--binary", "/nonexistent/archctl"][..], 1, "no such file"),
    ] {
        let out = g.install(args);
        assert_code(&out, code);
        assert_install_error(&out, needle);
    }
    let out = g.command(&["--help"]).run();
    assert_code(&out, 0);
    assert!(stdout(&out).contains("--root DIR"));
    assert_eq!(g.snapshot(), before);
}

#[test]
fn a_binary_that_does_not_run_here_is_installed_with_the_host_archctl_doing_the_rest() {
    // An archctl for another architecture, as when building an arm64 image on x86_64:
    // it cannot run here, so the archctl on PATH writes the config and the service.
    let g = Guest::new(Some(ALPINE_OS_RELEASE));
    let foreign = g.dir.path().join("archctl-foreign");
    let mut bytes = b"\x7fELF\x02\x01\x01".to_vec();
    bytes.resize(4096, 0);
    std::fs::write(&foreign, &bytes).unwrap();
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(ARCHCTL, g.stubs().join("archctl")).unwrap();
    let args = [
        "--binary",
        foreign.to_str().unwrap(),
        "--init",
        "openrc",
        "--no-emulators",
    ];
    let out = g.install(&args);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("does not run on this machine"),
        "{}",
        support::shown(&out)
    );
    assert_eq!(
        std::fs::read(g.root().join("usr/local/bin/archctl")).unwrap(),
        bytes
    );
    let script = std::fs::read_to_string(g.root().join("etc/init.d/archctl")).unwrap();
    assert!(script.contains("/usr/local/bin/archctl boot"), "{script}");
    assert!(g.root().join("etc/archctl/config.toml").exists());
    let once = g.snapshot();
    let out = g.install(&args);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("done: everything was already in place"));
    assert_eq!(g.snapshot(), once);
}

/// Links in the root that lead out of it (into a directory of the test, never this
/// machine's /etc), or nowhere: refused before anything is written, one error line
/// naming the link, the root and the outside exactly as they were. A link inside the
/// root is followed.
#[test]
fn links_out_of_the_root_are_refused_before_anything_is_written() {
    let host_before = host_state();
    let cases: &[(&str, &str, &str)] = &[
        // (link in the root, init, where it points: under the outside directory)
        ("usr/local", "sysv", "local"),
        ("usr/local/bin", "sysv", "bin"),
        ("etc/archctl", "sysv", "archctl"),
        ("etc", "sysv", "etc"),
        ("etc/systemd/system", "systemd", "system"),
        ("etc/init.d", "openrc", "init.d"),
        ("etc/rc.local", "sysv", "rc.local"),
        ("var/lib/archctl", "sysv", "archctl"),
        ("usr/local/share", "sysv", "share"),
        ("usr/local/share/man", "sysv", "share"),
        // Relative, climbing out with `..`.
        (
            "usr/local",
            "sysv",
            "../../../../../../../../../../OUTSIDE/local",
        ),
        // Dangling.
        ("usr/local", "sysv", "missing"),
        ("etc/rc.local", "sysv", "missing"),
    ];
    for &(link, init, target) in cases {
        let g = Guest::new(Some(&debian_os_release()));
        let outside = g.dir.path().join("outside");
        for d in [
            "local/bin",
            "bin",
            "archctl",
            "etc",
            "system",
            "init.d",
            "share",
        ] {
            std::fs::create_dir_all(outside.join(d)).unwrap();
        }
        std::fs::write(outside.join("etc/os-release"), debian_os_release()).unwrap();
        std::fs::write(outside.join("rc.local"), "#!/bin/sh\nexit 0\n").unwrap();
        let at = g.root().join(link);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        if at.is_dir() {
            std::fs::remove_dir_all(&at).unwrap();
        }
        let to = if let Some(rel) = target.strip_prefix("../") {
            let outside_rel = outside.strip_prefix("/").unwrap().display().to_string();
            PathBuf::from(format!("../{}", rel.replace("OUTSIDE", &outside_rel)))
        } else {
            outside.join(target)
        };
        std::os::unix::fs::symlink(&to, &at).unwrap();
        let case = format!("{link} -> {}", to.display());
        let before = g.snapshot();
        let outside_before = snapshot(&outside);
        for dry_run in [true, false] {
            let mut args = vec!["--binary", ARCHCTL, "--init", init, "--no-emulators"];
            if dry_run {
                args.push("--dry-run");
            }
            let out = g.install(&args);
            assert_code(&out, 1);
            let why = if target == "missing" {
                "which does not exist"
            } else {
                "which leads outside the root"
            };
            assert_install_error(&out, &format!("{} is a symbolic link to", at.display()));
            assert_install_error(&out, why);
            assert!(
                plus_lines(&out).is_empty(),
                "{case}: {:?}",
                plus_lines(&out)
            );
            assert_eq!(g.snapshot(), before, "{case}: the root changed");
            assert_eq!(
                snapshot(&outside),
                outside_before,
                "{case}: outside changed"
            );
        }
    }
    assert_eq!(
        host_state(),
        host_before,
        "something outside the roots changed"
    );

    // A link that stays inside the root is followed: the binary goes where it leads.
    let g = Guest::new(Some(&debian_os_release()));
    std::fs::create_dir_all(g.root().join("opt/local")).unwrap();
    std::fs::create_dir_all(g.root().join("usr")).unwrap();
    std::os::unix::fs::symlink("../opt/local", g.root().join("usr/local")).unwrap();
    let out = g.install(&["--binary", ARCHCTL, "--init", "sysv", "--no-emulators"]);
    assert_code(&out, 0);
    assert_eq!(
        std::fs::read(g.root().join("opt/local/bin/archctl")).unwrap(),
        archctl_bytes()
    );
    assert_eq!(
        std::fs::read_link(g.root().join("usr/local")).unwrap(),
        Path::new("../opt/local")
    );
}

const BOOT2DOCKER_OS_RELEASE: &str = "NAME=Boot2Docker\nVERSION=19.03.12\nID=boot2docker\nID_LIKE=tcl\nVERSION_ID=19.03.12\nPRETTY_NAME=\"Boot2Docker 19.03.12 (TCL 10.1)\"\n";

/// boot2docker keeps only its persistent disk: the binary, the config (naming the
/// emulator directory) and the boot line (naming the config) all land on it, in
/// bootlocal.sh though it did not exist; no package manager is called, and a second run
/// changes nothing.
#[test]
fn boot2docker_root_gets_everything_on_the_persistent_disk() {
    let host_before = host_state();
    // /var/lib/boot2docker a plain directory, and (as boot2docker's automount makes
    // it) a link to the disk's mount (relative: install.sh refuses links of a --root
    // that lead out of it as this machine resolves them).
    for link in [false, true] {
        let g = Guest::new(Some(BOOT2DOCKER_OS_RELEASE));
        let root = g.root();
        let disk = if link {
            std::fs::create_dir_all(root.join("mnt/sda1/var/lib/boot2docker")).unwrap();
            std::fs::create_dir_all(root.join("var/lib")).unwrap();
            std::os::unix::fs::symlink(
                "../../mnt/sda1/var/lib/boot2docker",
                root.join("var/lib/boot2docker"),
            )
            .unwrap();
            root.join("mnt/sda1/var/lib/boot2docker")
        } else {
            std::fs::create_dir_all(root.join("var/lib/boot2docker")).unwrap();
            root.join("var/lib/boot2docker")
        };
        let out = g.install(&["--binary", ARCHCTL]);
        assert_code(&out, 0);
        assert!(g.calls().is_empty(), "{:?}", g.calls());
        let text = stdout(&out);
        assert!(
            text.contains("emulators: boot2docker has no packages for them; 0 in"),
            "{}",
            support::shown(&out)
        );
        assert_eq!(
            std::fs::read(disk.join("archctl/archctl")).unwrap(),
            archctl_bytes()
        );
        let config = std::fs::read_to_string(disk.join("archctl/config.toml")).unwrap();
        assert!(
            config
                .lines()
                .any(|l| l == "emulator_dir = \"/var/lib/boot2docker/archctl/emulators\""),
            "{config}"
        );
        assert!(disk.join("archctl/emulators").is_dir());
        // The config parses, and says where the emulators are.
        let shown = Command::new(ARCHCTL)
            .arg("--config")
            .arg(disk.join("archctl/config.toml"))
            .args(["--json", "config", "show"])
            .run();
        assert_code(&shown, 0);
        assert!(
            shown
                .stdout()
                .contains("/var/lib/boot2docker/archctl/emulators"),
            "{}",
            shown.stdout()
        );
        let bootlocal = disk.join("bootlocal.sh");
        let rc = std::fs::read_to_string(&bootlocal).unwrap();
        assert_eq!(
            rc,
            "#!/bin/sh\n# bootlocal.sh created by archctl service install\n\
             /var/lib/boot2docker/archctl/archctl --config /var/lib/boot2docker/archctl/config.toml boot || true  # written by archctl service install\n"
        );
        let mode = std::fs::metadata(&bootlocal).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        for absent in ["usr/local/bin/archctl", "etc/archctl", "etc/rc.local"] {
            assert!(
                !root.join(absent).exists(),
                "{absent} on tmpfs: {}",
                support::shown(&out)
            );
        }
        let once = g.snapshot();
        let out = g.install(&["--binary", ARCHCTL]);
        assert_code(&out, 0);
        assert_eq!(g.snapshot(), once, "second run changed the root");
        for what in [
            "boot service: already in place",
            "done: everything was already in place",
        ] {
            assert!(stdout(&out).contains(what), "{}", support::shown(&out));
        }
        // The boot line's --config is what status compares: without it, out of date.
        let out = Command::new(ARCHCTL)
            .args(["service", "status", "--root"])
            .arg(&root)
            .args(["--binary", "/var/lib/boot2docker/archctl/archctl"])
            .run();
        assert!(out.stdout().contains("out of date"), "{}", out.stdout());
    }
    assert_eq!(
        host_state(),
        host_before,
        "something outside the roots changed"
    );
}

#[test]
fn boot2docker_dry_run_names_the_persistent_paths_and_an_explicit_prefix_wins() {
    let g = Guest::new(Some(BOOT2DOCKER_OS_RELEASE));
    let before = g.snapshot();
    let out = g.install(&["--binary", ARCHCTL, "--dry-run"]);
    assert_code(&out, 0);
    assert_eq!(g.snapshot(), before);
    let root = g.root().display().to_string();
    let lines = plus_lines(&out);
    for want in [
        format!("+ mkdir -p {root}/var/lib/boot2docker/archctl/emulators"),
        format!(
            "+ {root}/var/lib/boot2docker/archctl/archctl config init --output {root}/var/lib/boot2docker/archctl/config.toml"
        ),
        format!(
            "+ {root}/var/lib/boot2docker/archctl/archctl --config /var/lib/boot2docker/archctl/config.toml service install --root {root} --init auto --binary /var/lib/boot2docker/archctl/archctl"
        ),
    ] {
        assert!(lines.contains(&want), "no {want:?} in {lines:#?}");
    }
    let out = g.install(&[
        "--binary",
        ARCHCTL,
        "--prefix",
        "/opt/bin",
        "--no-emulators",
    ]);
    assert_code(&out, 0);
    let rc = std::fs::read_to_string(g.root().join("var/lib/boot2docker/bootlocal.sh")).unwrap();
    assert!(
        rc.contains("\n/opt/bin/archctl --config /var/lib/boot2docker/archctl/config.toml boot"),
        "{rc}"
    );
    assert!(g.root().join("opt/bin/archctl").is_file());
}
