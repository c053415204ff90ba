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
                    script.contains("need localmount")
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
