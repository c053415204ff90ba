//! `archctl run` end to end with a real engine: Debian's dockerd (own data root and
//! socket, never a user's daemon), a local registry with images built from
//! test-images/, and host-wide binfmt_misc registration (dockerd does not see a private
//! instance). These tests are serialised and remove exactly the entries they added, also
//! on failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::RegistryIsolated;

use support::RunExt;

use std::{path::Path, process::Command, sync::Mutex};

use support::engine::{
    BINFMT, BinfmtGuard, Dockerd, Podman, holders, host_entries, podman_available, restorable,
};
use support::registry::{ImageSpec, Registry, RegistryAuth, push_image};
use support::{ARCHCTL, assert_code, assert_error_line, stderr, stdout};

static SERIAL: Mutex<()> = Mutex::new(());

/// archctl with this dockerd, an own cache and no user configuration.
fn archctl(docker: &Dockerd, cache: &Path, args: &[&str]) -> support::Run {
    Command::new(ARCHCTL)
        .args(args)
        .env("DOCKER_HOST", docker.host())
        .registry_isolated(cache, cache)
        .env_remove("ARCHCTL_ENGINE")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .run()
}

/// An OCI platform and its QEMU target.
type Plat = (&'static str, &'static str);

/// The host's own platform and qemu name, and a foreign one it does not run. Whatever
/// the host's table already holds for the foreign one (another tool's handler, Debian's,
/// the README's first command's) is set aside by `guard` for the test and put back after,
/// so the test observes its own registration on any starting table. A candidate whose
/// handler cannot be put back exactly (an F entry registered from a container, its
/// interpreter not visible here) is passed over; None when every candidate is so.
fn platforms(guard: &mut BinfmtGuard) -> Option<(Plat, Plat)> {
    use archctl::binfmt::{BinfmtFs, KernelBinfmt};
    let (native, first_foreign) = if cfg!(target_arch = "aarch64") {
        (("linux/arm64", "aarch64"), ("linux/amd64", "x86_64"))
    } else {
        (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64"))
    };
    let candidates = [
        first_foreign,
        ("linux/riscv64", "riscv64"),
        ("linux/s390x", "s390x"),
        ("linux/ppc64le", "ppc64le"),
    ];
    let entries = KernelBinfmt::new(BINFMT).entries().unwrap_or_default();
    let foreign = candidates
        .into_iter()
        .find(|(_, q)| holders(&entries, q).into_iter().all(restorable))?;
    guard.set_aside(foreign.1);
    Some((native, foreign))
}

#[test]
fn run_picks_native_first_and_emulates_only_when_needed() {
    require_engine!();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut binfmt = BinfmtGuard::new();
    let docker = Dockerd::start();
    let reg = Registry::start(RegistryAuth::None);
    let cache = tempfile::tempdir().unwrap();
    let Some(((native_p, native_q), (foreign_p, foreign_q))) = platforms(&mut binfmt) else {
        skip_unless!(
            false,
            "every candidate foreign architecture has a host handler that could not be put back"
        );
        return;
    };
    let foreign_only = push_image(&reg, "e2e/foreign-only", "v1", ImageSpec::oci(foreign_p));
    let multi = push_image(
        &reg,
        "e2e/multi",
        "v1",
        ImageSpec::oci_index(&[foreign_p, native_p]),
    );
    let attested = push_image(
        &reg,
        "e2e/attested",
        "v1",
        ImageSpec::oci_index(&[native_p, foreign_p]).with_attestations(),
    );
    let run = |image: &str, extra: &[&str]| {
        let mut a = vec!["run", "--engine", "docker", "--rm", "--network", "none"];
        a.extend_from_slice(extra);
        a.push(image);
        archctl(&docker, cache.path(), &a)
    };

    // A foreign-only image runs under qemu, registered on demand.
    let out = run(&foreign_only.reference(&reg.addr()), &[]);
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out).trim(),
        format!("archctl-test {foreign_q} ok"),
        "{}",
        stderr(&out)
    );
    assert!(host_entries().contains(&format!("qemu-{foreign_q}")));

    // A multi-arch image runs natively, whatever else it offers.
    let out = run(&multi.reference(&reg.addr()), &[]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).trim(), format!("archctl-test {native_q} ok"));

    // Attestation entries are never chosen.
    let out = run(&attested.reference(&reg.addr()), &[]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).trim(), format!("archctl-test {native_q} ok"));

    // An explicit --platform wins: the foreign variant of the multi-arch image.
    let out = run(&multi.reference(&reg.addr()), &["--platform", foreign_p]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).trim(), format!("archctl-test {foreign_q} ok"));

    // The exit code is the container's (archctl became the engine).
    let out = run(
        &multi.reference(&reg.addr()),
        &["--entrypoint", "/no/such/program"],
    );
    assert_ne!(out.status.code(), Some(0));
    assert_ne!(
        out.status.code(),
        Some(1),
        "engine's code, not archctl's: {}",
        stderr(&out)
    );

    // --no-emulation on a foreign-only image: a clear refusal, nothing run.
    let out = archctl(
        &docker,
        cache.path(),
        &[
            "run",
            "--engine",
            "docker",
            "--no-emulation",
            "--rm",
            &foreign_only.reference(&reg.addr()),
        ],
    );
    assert_code(&out, 1);
    assert_error_line(&out, &format!("offers {foreign_p}"));

    // --dry-run prints the engine command.
    let out = archctl(
        &docker,
        cache.path(),
        &[
            "run",
            "--dry-run",
            "--engine",
            "docker",
            "-it",
            "--rm",
            &multi.reference(&reg.addr()),
            "sh",
        ],
    );
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out).trim(),
        format!(
            "docker run --platform {native_p} -it --rm {} sh",
            multi.reference(&reg.addr())
        )
    );
}

#[test]
fn run_with_podman() {
    require_engine!();
    skip_unless!(podman_available(), "podman not installed");
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut binfmt = BinfmtGuard::new();
    let reg = Registry::start(RegistryAuth::None);
    let Some(((native_p, native_q), (foreign_p, foreign_q))) = platforms(&mut binfmt) else {
        skip_unless!(
            false,
            "every candidate foreign architecture has a host handler that could not be put back"
        );
        return;
    };
    let foreign_only = push_image(&reg, "podman/foreign-only", "v1", ImageSpec::oci(foreign_p));
    let multi = push_image(
        &reg,
        "podman/multi",
        "v1",
        ImageSpec::oci_index(&[foreign_p, native_p]),
    );
    let podman = Podman::new();
    let run = |image: &str| podman.run(&["--tls-verify=false"], image);
    let out = run(&multi.reference(&reg.addr()));
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out).trim(),
        format!("archctl-test {native_q} ok"),
        "{}",
        stderr(&out)
    );
    let out = run(&foreign_only.reference(&reg.addr()));
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out).trim(),
        format!("archctl-test {foreign_q} ok"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn container_mode_registers_handlers_on_the_host() {
    require_engine!();
    let host_arch = if cfg!(target_arch = "aarch64") {
        "aarch64"
    } else {
        "x86_64"
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join(format!("target/static/archctl-{host_arch}"));
    skip_unless!(
        bin.exists(),
        "{} not built (bash guest-installer/build-static.sh)",
        bin.display()
    );
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut binfmt = BinfmtGuard::new();
    let Some((_, (_, foreign_q))) = platforms(&mut binfmt) else {
        skip_unless!(
            false,
            "every candidate foreign architecture has a host handler that could not be put back"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("archctl-image.tar");
    let out = Command::new("bash")
        .arg(root.join("guest-installer/build-image.sh"))
        .arg(&bin)
        .arg(&image)
        .arg(foreign_q)
        .run();
    assert_code(&out, 0);
    let docker = Dockerd::start();
    let d = |args: &[&str]| docker.cli(args);
    assert_code(&d(&["load", "-i", image.to_str().unwrap()]), 0);
    // Users run this with `--privileged`. This VM's bounding set lacks CAP_SYS_RESOURCE,
    // so runc cannot grant "all capabilities" here; what archctl needs of it is mounting
    // binfmt_misc (SYS_ADMIN) under an unmasked, writable /proc/sys.
    let out = d(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "--security-opt",
        "systempaths=unconfined",
        "--network",
        "none",
        "archctl:latest",
        "enable",
        foreign_q,
    ]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("registered") && stdout(&out).contains("verified"),
        "{}",
        stdout(&out)
    );
    // The handler lives on in the host's table, with the image's emulator held open (F).
    let entry =
        std::fs::read_to_string(Path::new(BINFMT).join(format!("qemu-{foreign_q}"))).unwrap();
    assert!(entry.contains("flags: F"), "{entry}");
    assert!(
        entry.contains(&format!("interpreter /usr/bin/qemu-{foreign_q}-static")),
        "{entry}"
    );
    // A foreign program in a chroot without any emulator runs.
    let chroot = tmp.path().join("chroot");
    std::fs::create_dir(&chroot).unwrap();
    let prog = support::write_program(&chroot, foreign_q);
    let out = Command::new("chroot")
        .arg(&chroot)
        .arg(format!("/{}", prog.file_name().unwrap().to_string_lossy()))
        .run();
    assert_code(&out, 0);
    assert_eq!(stdout(&out), format!("archctl-test {foreign_q} ok\n"));
}

/// A registry address on 127.0.0.1 nothing listens on (connection refused).
fn closed_registry() -> String {
    format!("127.0.0.1:{}", support::registry::free_port())
}

/// `linux/arm64` → `arm64`: the architecture `image inspect` reports.
fn oci_arch(platform: &str) -> &str {
    platform.split('/').nth(1).unwrap()
}

#[test]
fn run_and_pick_use_images_only_the_engine_has() {
    require_engine!();
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut binfmt = BinfmtGuard::new();
    let docker = Dockerd::start();
    let reg = Registry::start(RegistryAuth::None);
    let cache = tempfile::tempdir().unwrap();
    let Some(((native_p, native_q), (foreign_p, foreign_q))) = platforms(&mut binfmt) else {
        skip_unless!(
            false,
            "every candidate foreign architecture has a host handler that could not be put back"
        );
        return;
    };
    let src = push_image(
        &reg,
        "local/source",
        "v1",
        ImageSpec::oci_index(&[foreign_p, native_p]),
    )
    .reference(&reg.addr());
    let d = |args: &[&str]| docker.cli(args);
    // Names only docker has: under a registry nothing listens on (native), and a
    // repository the reachable registry does not have (foreign).
    let unreachable = format!("{}/local/native:1", closed_registry());
    let unknown = format!("{}/local/never-pushed:1", reg.addr());
    assert_code(&d(&["pull", "-q", "--platform", native_p, &src]), 0);
    assert_code(&d(&["tag", &src, &unreachable]), 0);
    assert_code(&d(&["pull", "-q", "--platform", foreign_p, &src]), 0);
    assert_code(&d(&["tag", &src, &unknown]), 0);
    let run = |image: &str| {
        archctl(
            &docker,
            cache.path(),
            &[
                "run",
                "--engine",
                "docker",
                "--rm",
                "--network",
                "none",
                image,
            ],
        )
    };

    // The registry cannot be reached: docker's local image runs, and archctl says why.
    let out = run(&unreachable);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).trim(), format!("archctl-test {native_q} ok"));
    assert!(
        stderr(&out).contains("connection refused; using docker's local image"),
        "{}",
        out.shown()
    );

    // The registry does not know it: the local image's platform is the one offered, so
    // a foreign local image runs emulated (registered on demand).
    let out = run(&unknown);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).trim(), format!("archctl-test {foreign_q} ok"));
    let out = archctl(
        &docker,
        cache.path(),
        &["--json", "pick", "--engine", "docker", &unknown],
    );
    assert_code(&out, 0);
    let v = out.json();
    assert_eq!(v["source"], "local", "{v}");
    assert_eq!(v["platform"], foreign_p);
    assert_eq!(v["mode"], "emulated");
    assert_eq!(v["candidates"].as_array().unwrap().len(), 1, "{v}");
    assert!(v["note"].as_str().unwrap().contains("not found"), "{v}");

    // The registry knows the image: its index is the source of truth, whatever docker
    // has cached under the name (foreign here). dockerd itself treats the cached image
    // of another platform as missing and pulls the chosen one, so no --pull is added
    // (and docker's store is not even asked).
    let out = archctl(
        &docker,
        cache.path(),
        &[
            "--json",
            "run",
            "--dry-run",
            "--engine",
            "docker",
            "--rm",
            &src,
        ],
    );
    assert_code(&out, 0);
    let v = out.json();
    assert_eq!(
        v["command"],
        serde_json::json!(["docker", "run", "--platform", native_p, "--rm", src])
    );
    assert_eq!(v["source"], "registry", "{v}");
    assert_eq!(v["pull"], serde_json::Value::Null, "{v}");
    assert_eq!(v["local"], serde_json::Value::Null, "{v}");
    let out = run(&src);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).trim(), format!("archctl-test {native_q} ok"));
    let v = archctl(
        &docker,
        cache.path(),
        &["--json", "pick", "--engine", "docker", &src],
    )
    .json();
    assert_eq!(v["source"], "registry", "{v}");

    // Neither has it: the registry's error, and that docker has no such image either.
    let out = run(&format!("{}/local/nowhere:1", reg.addr()));
    assert_code(&out, 1);
    assert_error_line(&out, "not found, and docker has no local image");
}

#[test]
fn podman_runs_the_chosen_platform_not_a_cached_one() {
    require_engine!();
    skip_unless!(podman_available(), "podman not installed");
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut binfmt = BinfmtGuard::new();
    let reg = Registry::start(RegistryAuth::None);
    let Some(((native_p, native_q), (foreign_p, foreign_q))) = platforms(&mut binfmt) else {
        skip_unless!(
            false,
            "every candidate foreign architecture has a host handler that could not be put back"
        );
        return;
    };
    let img = push_image(
        &reg,
        "cache/multi",
        "v1",
        ImageSpec::oci_index(&[native_p, foreign_p]),
    )
    .reference(&reg.addr());
    let podman = Podman::new();
    // The foreign handler is registered, so a cached foreign image would run (and say
    // so) if podman were left to run it.
    assert_code(&podman.archctl(&["enable", foreign_q]), 0);
    let pull = podman.podman(&[
        "pull",
        "-q",
        "--tls-verify=false",
        "--platform",
        foreign_p,
        &img,
    ]);
    assert_code(&pull, 0);
    assert_eq!(podman.cached_arch(&img), oci_arch(foreign_p));

    // archctl makes podman fetch the chosen platform, and says why.
    let dry = |extra: &[&str]| {
        let mut a = vec!["run", "--dry-run", "--engine", "podman"];
        a.extend_from_slice(extra);
        a.extend(["--rm", img.as_str()]);
        podman.archctl(&a)
    };
    let out = dry(&[]);
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out).trim(),
        format!("podman run --platform {native_p} --pull=always --rm {img}")
    );
    assert!(
        stderr(&out).contains(&format!(
            "podman's cached {img} is {foreign_p}, not {native_p}: --pull=always"
        )),
        "{}",
        out.shown()
    );
    let v = podman
        .archctl(&["--json", "run", "--dry-run", "--engine", "podman", &img])
        .json();
    assert_eq!(v["pull"], "--pull=always", "{v}");
    assert_eq!(v["local"]["platform"], foreign_p, "{v}");
    assert_eq!(v["source"], "registry", "{v}");
    // The user's own --pull is kept, nothing contradicting it added; archctl warns.
    let out = dry(&["--pull=never"]);
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out).trim(),
        format!("podman run --platform {native_p} --pull=never --rm {img}")
    );
    assert!(stderr(&out).contains("warning: "), "{}", out.shown());

    // Podman's own pull fails here (without --tls-verify=false it wants TLS from
    // 127.0.0.1). Left to itself, podman 4 then runs the cached foreign image after a
    // WARNING; through archctl the failed pull is an error and nothing foreign runs.
    let out = podman.run(&[], &img);
    assert!(
        !stdout(&out).contains(&format!("archctl-test {foreign_q}")),
        "the cached {foreign_p} image ran instead of {native_p}\n{}",
        out.shown()
    );
    assert_ne!(out.status.code(), Some(0), "{}", out.shown());
    assert_eq!(podman.cached_arch(&img), oci_arch(foreign_p));

    // Where podman can pull, the chosen platform runs and replaces the cached one.
    let out = podman.run(&["--tls-verify=false"], &img);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).trim(), format!("archctl-test {native_q} ok"));
    assert_eq!(podman.cached_arch(&img), oci_arch(native_p));
    let out = dry(&[]);
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out).trim(),
        format!("podman run --platform {native_p} --rm {img}"),
        "the cache matches: nothing added"
    );

    // An image only podman has (its registry unreachable) runs from podman's store.
    let unreachable = format!("{}/local/x:1", closed_registry());
    assert_code(&podman.podman(&["tag", &img, &unreachable]), 0);
    let out = podman.run(&[], &unreachable);
    assert_code(&out, 0);
    assert_eq!(stdout(&out).trim(), format!("archctl-test {native_q} ok"));
    assert!(
        stderr(&out).contains("using podman's local image"),
        "{}",
        out.shown()
    );
}

/// `doctor IMAGE` for images only docker's store has (the registry in their name does
/// not listen): the engine finds the program (`create`, `cp -L` through PATH and a
/// symlink, `rm`), and its ELF is held against the local image's label. `docker import`
/// labels an image with the host's platform whatever it holds, so importing a foreign
/// program makes a mislabeled image.
#[test]
fn doctor_image_checks_an_image_only_the_engine_has() {
    require_engine!();
    let docker = Dockerd::start();
    let cache = tempfile::tempdir().unwrap();
    let (native, foreign) = match std::env::consts::ARCH {
        "x86_64" => (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")),
        "aarch64" => (("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")),
        other => {
            skip_unless!(false, "no test programs paired for a {other} host");
            return;
        }
    };
    let d = |args: &[&str]| docker.cli(args);
    let import = |name: &str, target: &str| -> String {
        let mut b = tar::Builder::new(Vec::new());
        let prog = support::registry::test_program(target);
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(prog.len() as u64);
        b.append_data(&mut h, "prog", &prog[..]).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_mode(0o777);
        l.set_size(0);
        b.append_link(&mut l, "bin/run", "/prog").unwrap();
        let file = cache.path().join(format!("{target}.tar"));
        std::fs::write(&file, b.into_inner().unwrap()).unwrap();
        let image = format!("{}/doctor/{name}:1", closed_registry());
        let out = d(&[
            "import",
            "--change",
            r#"ENTRYPOINT ["run"]"#,
            "--change",
            "ENV PATH=/usr/bin:/bin",
            file.to_str().unwrap(),
            &image,
        ]);
        assert_code(&out, 0);
        image
    };
    let doctor = |image: &str| {
        let out = archctl(
            &docker,
            cache.path(),
            &["--json", "doctor", "--timeout", "5", image],
        );
        let v = out.json();
        (out, v)
    };
    let containers = || d(&["ps", "-aq"]).stdout();
    // Right: the host's program under the host's label.
    let right = import("right", native.1);
    let (out, r) = doctor(&right);
    assert_code(&out, 0);
    let p = support::doctor_check(&r, &format!("platform:{}", native.0));
    assert!(
        p["finding"]
            .as_str()
            .unwrap()
            .starts_with("ok: /bin/run is"),
        "{}",
        out.shown()
    );
    assert_eq!(support::doctor_check(&r, "source")["verdict"], "ok");
    // Mislabeled: a foreign program under the host's label.
    let wrong = import("wrong", foreign.1);
    let (out, r) = doctor(&wrong);
    assert_code(&out, 1);
    let p = support::doctor_check(&r, &format!("platform:{}", native.0));
    assert_eq!(p["verdict"], "fail", "{}", out.shown());
    let f = p["finding"].as_str().unwrap();
    assert!(
        f.contains(&format!(
            "MISMATCH: docker's local image says {}, /bin/run in the layers is {}",
            native.0, foreign.0
        )),
        "{f}"
    );
    // The containers doctor created to read the files are gone.
    assert_eq!(containers().trim(), "", "left behind: {}", containers());
}
