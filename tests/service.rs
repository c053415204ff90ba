//! `archctl service install|uninstall|status` into temporary roots: the files each init
//! system gets, idempotence, and uninstall leaving the root exactly as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::RunExt;

use std::process::Command;

use support::{
    ARCHCTL, assert_code, assert_error_line, service_in as service, stdout,
    text_snapshot as snapshot,
};

#[test]
fn each_init_system_gets_its_service_and_uninstall_removes_exactly_it() {
    for init in ["systemd", "openrc", "sysv"] {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc/systemd/system")).unwrap();
        std::fs::write(root.path().join("etc/hostname"), "guest\n").unwrap();
        let before = snapshot(root.path());
        assert_code(&service(root.path(), &["install", "--init", init]), 0);
        let once = snapshot(root.path());
        assert_code(&service(root.path(), &["install", "--init", init]), 0);
        assert_eq!(snapshot(root.path()), once, "{init}: install is idempotent");
        let out = service(root.path(), &["--json", "status", "--init", init]);
        assert_code(&out, 0);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["installed"], true, "{init}: {v}");
        assert_eq!(v["up_to_date"], true, "{init}: {v}");
        assert_eq!(v["init"], init);
        match init {
            "systemd" => {
                let unit = &once["etc/systemd/system/archctl.service"];
                for want in [
                    "Type=oneshot",
                    "RemainAfterExit=yes",
                    "ExecStart=/usr/local/bin/archctl boot",
                    "After=proc-sys-fs-binfmt_misc.mount",
                    "systemd-binfmt.service",
                    "Before=docker.service containerd.service podman.service",
                    "WantedBy=multi-user.target",
                ] {
                    assert!(unit.contains(want), "unit lacks {want}: {unit}");
                }
                assert_eq!(
                    once["etc/systemd/system/multi-user.target.wants/archctl.service"],
                    "-> /etc/systemd/system/archctl.service"
                );
            }
            "openrc" => {
                let script = &once["etc/init.d/archctl"];
                assert!(script.starts_with("755 #!/sbin/openrc-run"), "{script}");
                assert!(
                    script.contains("after localmount")
                        && script.contains("before docker containerd")
                );
                assert_eq!(
                    once["etc/runlevels/default/archctl"],
                    "-> /etc/init.d/archctl"
                );
            }
            _ => {
                let rc = &once["etc/rc.local"];
                assert!(rc.contains("/usr/local/bin/archctl boot"), "{rc}");
            }
        }
        assert_code(&service(root.path(), &["uninstall", "--init", init]), 0);
        assert_eq!(
            snapshot(root.path()),
            before,
            "{init}: uninstall left changes"
        );
        let out = service(root.path(), &["--json", "status", "--init", init]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["installed"], false);
    }
}

#[test]
fn an_existing_rc_local_keeps_its_content_and_mode() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let rc = root.path().join("etc/rc.local");
    std::fs::create_dir_all(rc.parent().unwrap()).unwrap();
    std::fs::write(&rc, "#!/bin/sh -e\necho booting\nexit 0\n").unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o750)).unwrap();
    let before = snapshot(root.path());
    assert_code(&service(root.path(), &["install", "--init", "sysv"]), 0);
    let text = std::fs::read_to_string(&rc).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "#!/bin/sh -e");
    assert!(
        lines[2].starts_with("/usr/local/bin/archctl boot"),
        "{text}"
    );
    assert_eq!(lines[3], "exit 0", "the line goes before exit 0");
    assert_code(&service(root.path(), &["uninstall", "--init", "sysv"]), 0);
    assert_eq!(snapshot(root.path()), before);
}

#[test]
fn foreign_files_are_never_overwritten_and_auto_detects_the_init() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/init.d")).unwrap();
    std::fs::write(
        root.path().join("etc/init.d/archctl"),
        "#!/sbin/openrc-run\n# mine\n",
    )
    .unwrap();
    let before = snapshot(root.path());
    let out = service(root.path(), &["install", "--init", "openrc"]);
    assert_code(&out, 1);
    assert_error_line(&out, "not written by archctl");
    assert_eq!(snapshot(root.path()), before);
    let out = service(root.path(), &["install", "--init", "upstart"]);
    assert_code(&out, 2);
    assert_error_line(&out, "unknown init system \"upstart\"");

    for (marker, init) in [
        (Some("usr/lib/systemd/systemd"), "systemd"),
        (Some("sbin/openrc-run"), "openrc"),
        (None, "sysv"),
    ] {
        let r = tempfile::tempdir().unwrap();
        if let Some(m) = marker {
            std::fs::create_dir_all(r.path().join(m).parent().unwrap()).unwrap();
            std::fs::write(r.path().join(m), "").unwrap();
        }
        let out = service(r.path(), &["install"]);
        assert_code(&out, 0);
        assert!(
            stdout(&out).starts_with(&format!("{init} boot service installed")),
            "{}",
            stdout(&out)
        );
    }
}

#[test]
fn the_unit_passes_systemd_analyze_and_the_script_parses() {
    let root = tempfile::tempdir().unwrap();
    let run = |init: &str| {
        Command::new(ARCHCTL)
            .args(["service", "install", "--init", init, "--root"])
            .arg(root.path())
            .args(["--binary", ARCHCTL])
            .run()
    };
    assert_code(&run("systemd"), 0);
    assert_code(&run("openrc"), 0);
    match Command::new("systemd-analyze")
        .arg("verify")
        .arg(root.path().join("etc/systemd/system/archctl.service"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "systemd-analyze: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => {
            assert!(std::env::var_os("CI").is_none(), "CI installs systemd");
            eprintln!("skipped: systemd-analyze not installed");
        }
    }
    let out = Command::new("sh")
        .arg("-n")
        .arg(root.path().join("etc/init.d/archctl"))
        .run();
    assert!(out.status.success());
}

#[test]
fn a_missing_root_is_an_error_and_is_not_created() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("no-such-image");
    for args in [
        &["install", "--init", "systemd"][..],
        &["uninstall", "--init", "systemd"],
    ] {
        let out = service(&root, args);
        assert_code(&out, 1);
        assert_error_line(
            &out,
            &format!("root {}: No such file or directory", root.display()),
        );
        assert!(
            out.stderr()
                .contains("hint: --root must be an existing directory"),
            "{}",
            out.stderr()
        );
        assert!(!root.exists());
    }
}

/// A boot2docker-like root: `ID=boot2docker` in etc/os-release, and (like boot2docker's
/// automount) /var/lib/boot2docker a link into the persistent disk's mount.
fn boot2docker_root(link_to_disk: bool) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let p = root.path();
    std::fs::create_dir_all(p.join("etc")).unwrap();
    std::fs::write(
        p.join("etc/os-release"),
        "NAME=Boot2Docker\nVERSION=19.03.12\nID=boot2docker\nID_LIKE=tcl\n",
    )
    .unwrap();
    if link_to_disk {
        std::fs::create_dir_all(p.join("mnt/sda1/var/lib/boot2docker")).unwrap();
        std::fs::create_dir_all(p.join("var/lib")).unwrap();
        std::os::unix::fs::symlink(
            "/mnt/sda1/var/lib/boot2docker",
            p.join("var/lib/boot2docker"),
        )
        .unwrap();
    }
    root
}

#[test]
fn boot2docker_gets_a_new_bootlocal_sh_not_rc_local() {
    use std::os::unix::fs::PermissionsExt;
    for link_to_disk in [false, true] {
        let root = boot2docker_root(link_to_disk);
        // An rc.local exists (as in Tiny Core's /etc): boot2docker's /etc is tmpfs, so
        // it is not where a boot line survives.
        std::fs::write(root.path().join("etc/rc.local"), "#!/bin/sh\nexit 0\n").unwrap();
        let before = snapshot(root.path());
        let out = service(root.path(), &["install"]);
        assert_code(&out, 0);
        assert!(
            stdout(&out).starts_with("sysv boot service installed"),
            "{}",
            stdout(&out)
        );
        assert!(
            stdout(&out).contains("var/lib/boot2docker/bootlocal.sh"),
            "{}",
            stdout(&out)
        );
        let file = if link_to_disk {
            "mnt/sda1/var/lib/boot2docker/bootlocal.sh"
        } else {
            "var/lib/boot2docker/bootlocal.sh"
        };
        let path = root.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#!/bin/sh", "{text}");
        assert_eq!(
            lines.last().unwrap(),
            &"/usr/local/bin/archctl boot || true  # written by archctl service install",
            "{text}"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "bootlocal.sh must be executable");
        assert_eq!(
            std::fs::read_to_string(root.path().join("etc/rc.local")).unwrap(),
            "#!/bin/sh\nexit 0\n",
            "rc.local is left alone"
        );
        let once = snapshot(root.path());
        assert_code(&service(root.path(), &["install"]), 0);
        assert_eq!(snapshot(root.path()), once, "install is idempotent");
        let out = service(root.path(), &["--json", "status"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["installed"], true, "{v}");
        assert_eq!(v["up_to_date"], true, "{v}");
        assert_eq!(v["command"], "/usr/local/bin/archctl boot", "{v}");
        assert!(
            v["paths"][0]
                .as_str()
                .unwrap()
                .ends_with("var/lib/boot2docker/bootlocal.sh"),
            "{v}"
        );
        // It created the file (and its directories): uninstall removes them all.
        assert_code(&service(root.path(), &["uninstall"]), 0);
        assert_eq!(snapshot(root.path()), before, "uninstall left changes");
        let out = service(root.path(), &["--json", "status"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["installed"], false, "{v}");
    }
}

#[test]
fn an_existing_bootlocal_sh_keeps_its_content_and_a_created_one_keeps_added_lines() {
    let root = boot2docker_root(false);
    let file = root.path().join("var/lib/boot2docker/bootlocal.sh");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "#!/bin/sh\nmount -t vboxsf www /var/www\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = snapshot(root.path());
    assert_code(&service(root.path(), &["install"]), 0);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("#!/bin/sh\nmount -t vboxsf www /var/www\n/usr/local/bin/archctl boot"),
        "{text}"
    );
    assert_code(&service(root.path(), &["uninstall"]), 0);
    assert_eq!(snapshot(root.path()), before, "only archctl's line goes");
    // boot2docker runs bootlocal.sh as a program: one that is not executable (it would
    // never run) becomes so, for its owner.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_code(&service(root.path(), &["install"]), 0);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o744);

    // A bootlocal.sh archctl created, to which the user added a line: uninstall keeps
    // the file (header and the user's line), without archctl's line.
    let root = boot2docker_root(false);
    assert_code(&service(root.path(), &["install"]), 0);
    let file = root.path().join("var/lib/boot2docker/bootlocal.sh");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("echo mine\n");
    std::fs::write(&file, &text).unwrap();
    assert_code(&service(root.path(), &["uninstall"]), 0);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "#!/bin/sh\n# bootlocal.sh created by archctl service install\necho mine\n"
    );
}

#[test]
fn the_boot_command_carries_the_global_config() {
    let config = "/var/lib/boot2docker/archctl/config.toml";
    // The global option before the subcommand (as the guest installer runs it), and
    // after it.
    let install = |root: &std::path::Path, before: bool, init: &str| {
        let mut c = Command::new(ARCHCTL);
        if before {
            c.args(["--config", config]);
        }
        c.args(["service", "install", "--init", init, "--root"])
            .arg(root)
            .args(["--binary", "/var/lib/boot2docker/archctl/archctl"]);
        if !before {
            c.args(["--config", config]);
        }
        c.run()
    };
    let want = format!("/var/lib/boot2docker/archctl/archctl --config {config} boot");
    for before in [true, false] {
        let root = boot2docker_root(true);
        assert_code(&install(root.path(), before, "auto"), 0);
        let text = std::fs::read_to_string(
            root.path()
                .join("mnt/sda1/var/lib/boot2docker/bootlocal.sh"),
        )
        .unwrap();
        assert!(text.contains(&format!("\n{want} || true  #")), "{text}");
        // status compares with the --config given: without it, out of date.
        let status = |with: bool| {
            let mut c = Command::new(ARCHCTL);
            if with {
                c.args(["--config", config]);
            }
            let out = c
                .args(["--json", "service", "status", "--root"])
                .arg(root.path())
                .args(["--binary", "/var/lib/boot2docker/archctl/archctl"])
                .run();
            assert_code(&out, 0);
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
        };
        let v = status(true);
        assert_eq!(
            (v["installed"].clone(), v["up_to_date"].clone()),
            (true.into(), true.into()),
            "{v}"
        );
        assert_eq!(v["command"], want.as_str());
        let v = status(false);
        assert_eq!(
            (v["installed"].clone(), v["up_to_date"].clone()),
            (true.into(), false.into()),
            "{v}"
        );
    }
    for (init, file) in [
        ("systemd", "etc/systemd/system/archctl.service"),
        ("openrc", "etc/init.d/archctl"),
    ] {
        let root = tempfile::tempdir().unwrap();
        assert_code(&install(root.path(), true, init), 0);
        let text = std::fs::read_to_string(root.path().join(file)).unwrap();
        assert!(text.contains(&want), "{init}: {text}");
    }
}

/// The boot line runs as written: a config path with blanks and quotes reaches archctl
/// as one argument, from the shell (bootlocal.sh) and in systemd's syntax.
#[test]
fn a_config_path_with_blanks_and_quotes_is_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let args_file = dir.path().join("args");
    let fake = dir.path().join("fake-archctl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{}'\n",
            args_file.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = "/conf dir/it's \"here\" $HOME %n.toml";
    let root = boot2docker_root(false);
    let out = Command::new(ARCHCTL)
        .args(["--config", config, "service", "install", "--root"])
        .arg(root.path())
        .arg("--binary")
        .arg(&fake)
        .run();
    assert_code(&out, 0);
    let bootlocal = root.path().join("var/lib/boot2docker/bootlocal.sh");
    let run = Command::new("sh").arg(&bootlocal).run();
    assert!(run.status.success(), "{}", run.stderr());
    assert_eq!(
        std::fs::read_to_string(&args_file).unwrap(),
        format!("--config\n{config}\nboot\n")
    );
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(ARCHCTL)
        .args([
            "--config", config, "service", "install", "--init", "systemd", "--root",
        ])
        .arg(root.path())
        .args(["--binary", "/usr/local/bin/archctl"])
        .run();
    assert_code(&out, 0);
    let unit =
        std::fs::read_to_string(root.path().join("etc/systemd/system/archctl.service")).unwrap();
    assert!(
        unit.contains(
            r#"ExecStart=/usr/local/bin/archctl --config "/conf dir/it's \"here\" $$HOME %%n.toml" boot"#
        ),
        "{unit}"
    );
}

#[test]
fn a_relative_config_for_another_root_is_refused_and_made_absolute_for_this_one() {
    let root = boot2docker_root(false);
    let before = snapshot(root.path());
    let out = Command::new(ARCHCTL)
        .args([
            "--config",
            "archctl/config.toml",
            "service",
            "install",
            "--root",
        ])
        .arg(root.path())
        .run();
    assert_code(&out, 2);
    assert_error_line(&out, "--config archctl/config.toml: is relative");
    assert!(out.stderr().contains("hint: "), "{}", out.stderr());
    assert_eq!(snapshot(root.path()), before);
    // For this system (`--root /`), status shows the absolute path it would write (no
    // install on the host).
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(ARCHCTL)
        .current_dir(cwd.path())
        .args([
            "--config", "c.toml", "--json", "service", "status", "--init", "sysv",
        ])
        .args(["--binary", "/usr/local/bin/archctl"])
        .run();
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["command"],
        format!(
            "/usr/local/bin/archctl --config {}/c.toml boot",
            cwd.path().display()
        )
        .as_str(),
        "{v}"
    );
}
