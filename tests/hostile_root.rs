//! `archctl service install|uninstall --root R` in roots whose links point out of them:
//! nothing outside the root is ever written or removed. Each link points into a
//! temporary directory outside the root (never this machine's /etc), which holds bait
//! an escaping install would write next to and an escaping uninstall would remove: it
//! must be byte for byte the same after every run. The write is either confined to the
//! root (the link's target exists inside it, as chroot would resolve it) or refused with
//! an error naming the link, the root left as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    os::unix::fs::symlink,
    path::{Path, PathBuf},
};

use support::{assert_code, assert_error_line, service_in as service, text_snapshot as snapshot};

/// archctl's marker, and its rc.local line: what an escaping uninstall would remove.
const MARKER: &str = "written by archctl service install";
const MARKED_LINE: &str =
    "/usr/local/bin/archctl boot || true  # written by archctl service install";

/// A root and a directory outside it full of bait: every file name install writes,
/// each carrying archctl's marker.
struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "guest\n").unwrap();
        for d in [
            "",
            "etc",
            "etc/systemd/system/multi-user.target.wants",
            "etc/init.d",
            "etc/runlevels/default",
            "systemd/system/multi-user.target.wants",
            "runlevels/default",
            "lib/archctl",
        ] {
            std::fs::create_dir_all(outside.join(d)).unwrap();
        }
        for f in [
            "archctl.service",
            "archctl",
            "rc.local",
            "etc/rc.local",
            "etc/init.d/archctl",
            "etc/systemd/system/archctl.service",
            "systemd/system/archctl.service",
            "init.d/archctl",
        ] {
            if let Some(d) = Path::new(f).parent() {
                std::fs::create_dir_all(outside.join(d)).unwrap();
            }
            std::fs::write(
                outside.join(f),
                format!("#!/bin/sh\n# {MARKER}\n{MARKED_LINE}\n"),
            )
            .unwrap();
        }
        for l in [
            "multi-user.target.wants/archctl.service",
            "etc/systemd/system/multi-user.target.wants/archctl.service",
            "systemd/system/multi-user.target.wants/archctl.service",
            "runlevels/default/archctl",
            "etc/runlevels/default/archctl",
        ] {
            if let Some(d) = Path::new(l).parent() {
                std::fs::create_dir_all(outside.join(d)).unwrap();
            }
            symlink("/etc/whatever", outside.join(l)).unwrap();
        }
        // A state file naming an empty directory outside: an uninstall reading it
        // through a link would remove that directory.
        std::fs::create_dir_all(outside.join("empty")).unwrap();
        std::fs::write(
            outside.join("lib/archctl/service-install.json"),
            format!("{{\"dirs\": [\"{}\"]}}", outside.join("empty").display()),
        )
        .unwrap();
        World {
            _tmp: tmp,
            root,
            outside,
        }
    }

    /// A link at `rel` in the root (its directory made first) to `target`.
    fn link(&self, rel: &str, target: impl AsRef<Path>) {
        let at = self.root.join(rel);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        if at.is_dir() && !at.is_symlink() {
            std::fs::remove_dir_all(&at).unwrap();
        }
        symlink(target, at).unwrap();
    }

    /// Where the root would resolve `abs` (an absolute path) as chroot does.
    fn in_root(&self, abs: &Path) -> PathBuf {
        self.root.join(abs.strip_prefix("/").unwrap())
    }
}

/// Install and uninstall with `init`: the outside stays byte for byte the same; a
/// refused install (`refused`: a needle of its error line) leaves the root as it was,
/// a confined one is undone by uninstall.
#[track_caller]
fn check(w: &World, init: &str, refused: Option<&str>, case: &str) {
    check_codes(w, init, refused, 0, case)
}

/// [`check`], uninstall exiting with `uninstall_code`.
#[track_caller]
fn check_codes(w: &World, init: &str, refused: Option<&str>, uninstall_code: i32, case: &str) {
    let outside = snapshot(&w.outside);
    let before = snapshot(&w.root);
    let out = service(&w.root, &["install", "--init", init]);
    match refused {
        Some(needle) => {
            assert_code(&out, 1);
            assert_error_line(&out, needle);
            assert_eq!(
                snapshot(&w.root),
                before,
                "{case}: a refused install changed the root"
            );
        }
        None => {
            assert_code(&out, 0);
            assert_ne!(snapshot(&w.root), before, "{case}: install wrote nothing");
        }
    }
    assert_eq!(
        snapshot(&w.outside),
        outside,
        "{case}: install wrote outside the root"
    );
    let out = service(&w.root, &["uninstall", "--init", init]);
    assert_code(&out, uninstall_code);
    assert_eq!(
        snapshot(&w.outside),
        outside,
        "{case}: uninstall wrote outside the root"
    );
    assert_eq!(
        snapshot(&w.root),
        before,
        "{case}: uninstall left changes in the root"
    );
}

/// The directories install writes in, each a link out of the root (absolute, and
/// relative with enough `..` to climb out): refused, since the target is not in the
/// root; with the target made inside the root too, the write goes there.
#[test]
fn directory_links_out_of_the_root_are_refused_or_followed_inside_it() {
    let cases: &[(&str, &str, &str)] = &[
        ("etc/systemd/system", "systemd", "systemd/system"),
        ("etc/init.d", "openrc", "etc/init.d"),
        ("etc/runlevels", "openrc", "runlevels"),
        ("etc", "systemd", "etc"),
        ("etc", "openrc", "etc"),
        ("etc", "sysv", "etc"),
        ("var/lib", "sysv", "lib"),
    ];
    for &(link, init, target) in cases {
        for relative in [false, true] {
            let w = World::new();
            let abs = w.outside.join(target);
            let target = if relative {
                let ups = "../".repeat(link.matches('/').count() + 12);
                PathBuf::from(format!("{ups}{}", abs.strip_prefix("/").unwrap().display()))
            } else {
                abs.clone()
            };
            let case = format!("{link} -> {} ({init})", target.display());
            w.link(link, &target);
            check(
                &w,
                init,
                Some(&format!("{link}: a symbolic link to")),
                &case,
            );

            // The same link in a root that has its target: confined to the root.
            let w = World::new();
            w.link(link, &target);
            std::fs::create_dir_all(w.in_root(&abs)).unwrap();
            check(&w, init, None, &format!("{case}, target in the root"));
        }
    }
}

/// The confined write really is at the chroot-resolved place, and a second install
/// is idempotent there.
#[test]
fn a_confined_install_writes_where_chroot_would() {
    let w = World::new();
    let abs = w.outside.join("systemd/system");
    w.link("etc/systemd/system", &abs);
    std::fs::create_dir_all(w.in_root(&abs)).unwrap();
    let outside = snapshot(&w.outside);
    assert_code(&service(&w.root, &["install", "--init", "systemd"]), 0);
    let unit = std::fs::read_to_string(w.in_root(&abs).join("archctl.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/archctl boot"),
        "{unit}"
    );
    assert_eq!(
        std::fs::read_link(
            w.in_root(&abs)
                .join("multi-user.target.wants/archctl.service")
        )
        .unwrap(),
        Path::new("/etc/systemd/system/archctl.service")
    );
    let once = snapshot(&w.root);
    assert_code(&service(&w.root, &["install", "--init", "systemd"]), 0);
    assert_eq!(snapshot(&w.root), once);
    let out = service(&w.root, &["--json", "status", "--init", "systemd"]);
    assert_eq!(out.json()["installed"], true, "{}", out.stdout());
    assert_eq!(snapshot(&w.outside), outside);
}

/// rc.local itself a link to a file outside (holding archctl's line, as the host's
/// would after an install there): install refuses to edit it, uninstall leaves it.
/// A link to an rc.local inside the root is edited in place, the link kept.
#[test]
fn an_rc_local_link_out_of_the_root_is_never_edited() {
    let w = World::new();
    w.link("etc/rc.local", w.outside.join("rc.local"));
    check(
        &w,
        "sysv",
        Some("etc/rc.local: a symbolic link to"),
        "rc.local",
    );

    let w = World::new();
    w.link("etc/rc.local", "rc.d/rc.local");
    std::fs::create_dir_all(w.root.join("etc/rc.d")).unwrap();
    std::fs::write(
        w.root.join("etc/rc.d/rc.local"),
        "#!/bin/sh\necho hi\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(
        w.root.join("etc/rc.d/rc.local"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let before = snapshot(&w.root);
    assert_code(&service(&w.root, &["install", "--init", "sysv"]), 0);
    assert_eq!(
        std::fs::read_link(w.root.join("etc/rc.local")).unwrap(),
        Path::new("rc.d/rc.local")
    );
    let text = std::fs::read_to_string(w.root.join("etc/rc.d/rc.local")).unwrap();
    assert!(text.contains("archctl boot"), "{text}");
    assert_code(&service(&w.root, &["uninstall", "--init", "sysv"]), 0);
    assert_eq!(snapshot(&w.root), before);
}

/// Dangling links, out of the root and inside it: nothing is created through them.
#[test]
fn dangling_links_are_refused_naming_the_link() {
    for (link, init) in [
        ("etc/init.d", "openrc"),
        ("etc/systemd/system", "systemd"),
        ("etc/rc.local", "sysv"),
    ] {
        for target in ["missing", "/nowhere/missing"] {
            let w = World::new();
            let t = if target == "missing" {
                w.outside.join("missing")
            } else {
                PathBuf::from(target)
            };
            w.link(link, &t);
            check(&w, init, Some(&format!("{link}: a symbolic link to")), link);
            assert!(!w.outside.join("missing").exists());
        }
    }
}

/// A link that chroot resolves to itself (as `R/etc -> /etc` is `R/etc` again) is a
/// loop, refused. Here `R/etc -> OUTSIDE/etc`, which on this machine leads into the
/// outside directory, and in the root to `R/OUTSIDE/etc -> ../../../../etc`, which
/// climbs back to `R/etc` (`..` stops at the root) but on this machine would lead
/// only to the test's temporary directory, never to /etc.
#[test]
fn a_link_that_resolves_to_itself_in_the_root_is_a_loop() {
    let w = World::new();
    let host_etc = w.outside.join("etc");
    w.link("etc", &host_etc);
    let inner = w.in_root(&host_etc);
    let depth = inner.strip_prefix(&w.root).unwrap().components().count();
    w.link(
        inner.strip_prefix(&w.root).unwrap().to_str().unwrap(),
        format!("{}etc", "../".repeat(depth)),
    );
    for init in ["systemd", "openrc", "sysv"] {
        // Uninstall cannot look either: the same error.
        check_codes(&w, init, Some("too many levels of symbolic links"), 1, init);
    }
}

/// An image moved after install: uninstall of the new place removes what install
/// created there, and nothing at the old place (where something else now is).
#[test]
fn uninstall_of_a_moved_image_touches_only_the_image() {
    for init in ["systemd", "openrc", "sysv"] {
        let tmp = tempfile::tempdir().unwrap();
        let old = tmp.path().join("build");
        let new = tmp.path().join("image");
        std::fs::create_dir_all(old.join("etc")).unwrap();
        std::fs::write(old.join("etc/hostname"), "guest\n").unwrap();
        let pristine = snapshot(&old);
        assert_code(&service(&old, &["install", "--init", init]), 0);
        std::fs::rename(&old, &new).unwrap();
        // The next build at the old place, with the same (empty) directories.
        for d in [
            "etc/systemd/system/multi-user.target.wants",
            "etc/runlevels/default",
            "etc/init.d",
            "var/lib/archctl",
        ] {
            std::fs::create_dir_all(old.join(d)).unwrap();
        }
        let next = snapshot(&old);
        assert_code(&service(&new, &["uninstall", "--init", init]), 0);
        assert_eq!(
            snapshot(&old),
            next,
            "{init}: uninstall touched the old place"
        );
        assert_eq!(snapshot(&new), pristine, "{init}: uninstall left changes");
    }
}

/// A state file of an older archctl (absolute paths, the root joined with them): the
/// directories under the root are removed, one outside it (the root was moved, or the
/// file was made to name it) is left; a relative one climbing out is ignored.
#[test]
fn an_old_state_file_never_leads_uninstall_out_of_the_root() {
    let w = World::new();
    std::fs::create_dir_all(w.root.join("etc/systemd/system")).unwrap();
    let before = snapshot(&w.root);
    std::fs::create_dir_all(w.root.join("var/lib/archctl")).unwrap();
    std::fs::create_dir_all(w.root.join("etc/systemd/system/multi-user.target.wants")).unwrap();
    let dirs = [
        w.root.join("var"),
        w.root.join("var/lib"),
        w.root.join("var/lib/archctl"),
        w.outside.join("empty"),
        w.root.join("etc/systemd/system/multi-user.target.wants"),
    ];
    let state = serde_json::json!({ "dirs": dirs });
    std::fs::write(
        w.root.join("var/lib/archctl/service-install.json"),
        state.to_string(),
    )
    .unwrap();
    let outside = snapshot(&w.outside);
    assert_code(&service(&w.root, &["uninstall", "--init", "systemd"]), 0);
    assert_eq!(snapshot(&w.outside), outside, "uninstall removed outside");
    assert_eq!(snapshot(&w.root), before);

    // Written by this archctl: relative; one climbing out is not followed.
    std::fs::create_dir_all(w.root.join("var/lib/archctl")).unwrap();
    let up = format!("../../../../../../..{}", w.outside.join("empty").display());
    let state = serde_json::json!({ "dirs": ["var", "var/lib", "var/lib/archctl", up], "root_relative": true });
    std::fs::write(
        w.root.join("var/lib/archctl/service-install.json"),
        state.to_string(),
    )
    .unwrap();
    assert_code(&service(&w.root, &["uninstall", "--init", "systemd"]), 0);
    assert_eq!(snapshot(&w.outside), outside, "uninstall removed outside");
    assert_eq!(snapshot(&w.root), before);
}
