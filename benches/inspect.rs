//! Benchmark: `archctl inspect` against `skopeo inspect --raw` and
//! `docker manifest inspect --insecure` on the same local registries, in one run.
//! Run with `cargo bench --bench inspect` (needs docker-registry, skopeo, hyperfine,
//! openssl, apache2-utils; docker is optional). Prints a table with ratios.
//! `ARCHCTL=path/to/archctl` measures that build; `ARCHCTL_BASELINE=path/to/archctl` adds
//! each archctl command run with that build too, in the same run, to compare two builds.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

#[path = "../tests/support/registry.rs"]
mod registry;

use std::{path::Path, process::Command};

use registry::{ImageSpec, Registry, RegistryAuth, TokenServer, push_image, push_many};

fn hyperfine(name: &str, runs: u32, cmds: &[(&str, String)], out: &Path) -> Vec<(String, f64)> {
    let json = out.join(format!("{name}.json"));
    let mut c = Command::new("hyperfine");
    c.args([
        "-N",
        "--warmup",
        "2",
        "--runs",
        &runs.to_string(),
        "--export-json",
    ])
    .arg(&json);
    // ARCHCTL_BASELINE=path/to/archctl: every archctl command runs with that binary too,
    // in the same hyperfine run (named `<name>-baseline`), to compare two builds.
    let baseline = std::env::var("ARCHCTL_BASELINE").ok();
    let archctl = archctl_bin();
    for (n, cmd) in cmds {
        c.args(["-n", n, cmd]);
        if let Some(b) = baseline.as_deref().filter(|_| cmd.contains(&archctl)) {
            c.args(["-n", &format!("{n}-baseline"), &cmd.replace(&archctl, b)]);
        }
    }
    let status = c
        .stdout(std::process::Stdio::null())
        .status()
        .expect("hyperfine");
    assert!(status.success(), "hyperfine failed for {name}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut t: Vec<f64> = r["times"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            t.sort_by(|a, b| a.partial_cmp(b).unwrap());
            (
                r["command"].as_str().unwrap().to_string(),
                t[t.len() / 2] * 1e3,
            )
        })
        .collect()
}

fn report(title: &str, rows: &[(String, f64)], base: &str) {
    let b = rows
        .iter()
        .find(|(n, _)| n == base)
        .map(|r| r.1)
        .unwrap_or(f64::NAN);
    println!("\n{title}");
    println!(
        "  {:34} {:>10} {:>12}",
        "command",
        "median ms",
        format!("/ {base}")
    );
    for (n, ms) in rows {
        println!("  {n:34} {ms:10.2} {:12.2}", ms / b);
    }
}

/// `INSPECT_RSS=N cargo bench --bench inspect`: peak RSS of one `archctl inspect` of N
/// references (target for 1,000: <= 16 MB), for each binary in `ARCHCTL` (space-separated;
/// default: the bench's own build), via /usr/bin/time.
fn inspect_rss(reg: &Registry, n: usize, archctl: &str, env: &str) {
    let many = push_many(reg, n);
    let list: Vec<String> = many.iter().map(|p| p.reference(&reg.addr())).collect();
    let bins = std::env::var("ARCHCTL").unwrap_or_else(|_| archctl.to_string());
    for bin in bins.split_whitespace() {
        for round in 0..3 {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "/usr/bin/time -f '%M %e' {env} {bin} inspect --no-cache {} >/dev/null",
                    list.join(" ")
                ))
                .output()
                .expect("/usr/bin/time (apt-get install time)");
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("");
            println!("inspect of {n} refs, round {round}: peak RSS KiB, seconds: {last} ({bin})");
        }
    }
}

/// The archctl measured: `ARCHCTL=path` (one path; e.g. the static release build, as
/// shipped), else the bench's own build.
fn archctl_bin() -> String {
    std::env::var("ARCHCTL")
        .ok()
        .filter(|a| !a.is_empty() && !a.contains(' '))
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_archctl").to_string())
}

fn main() {
    let archctl = &archctl_bin();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let docker_cfg = tmp.path().join("docker");
    std::fs::create_dir(&docker_cfg).unwrap();
    let have_docker = Command::new("docker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let env = format!(
        "env ARCHCTL_CACHE_DIR={} DOCKER_CONFIG={} ARCHCTL_DOCKER_DAEMON_JSON=/nonexistent ARCHCTL_REGISTRIES_CONF=/nonexistent",
        cache.display(),
        docker_cfg.display()
    );
    let skopeo_auth = tmp.path().join("auth.json");
    std::fs::write(&skopeo_auth, "{}").unwrap();
    let skopeo = format!(
        "env REGISTRY_AUTH_FILE={} skopeo inspect --raw --tls-verify=false",
        skopeo_auth.display()
    );

    // 1. One multi-arch image on a plain local registry.
    let reg = Registry::start(RegistryAuth::None);
    if let Ok(n) = std::env::var("INSPECT_RSS") {
        return inspect_rss(&reg, n.parse().expect("INSPECT_RSS=<count>"), archctl, &env);
    }
    let multi = push_image(
        &reg,
        "bench/multi",
        "v1",
        ImageSpec::oci_index(registry::INDEX_PLATFORMS).with_attestations(),
    );
    let r = multi.reference(&reg.addr());
    let mut cmds = vec![
        ("archctl", format!("{env} {archctl} inspect --no-cache {r}")),
        ("archctl-warm-cache", format!("{env} {archctl} inspect {r}")),
        ("skopeo", format!("{skopeo} docker://{r}")),
    ];
    if have_docker {
        cmds.push((
            "docker-manifest-inspect",
            format!(
                "env DOCKER_CONFIG={} docker manifest inspect --insecure {r}",
                docker_cfg.display()
            ),
        ));
    }
    let rows = hyperfine("one", 40, &cmds, tmp.path());
    report(
        "one multi-arch image (OCI index, 8 platforms + attestations), local registry",
        &rows,
        "skopeo",
    );

    // 2. A token-auth repository (credentials, token server, RS256).
    let ts = TokenServer::start(&[("bench", "pw")], &[]);
    let treg = Registry::start(RegistryAuth::Token(&ts));
    let priv_img = push_image(
        &treg,
        "private/multi",
        "v1",
        ImageSpec::oci_index(registry::INDEX_PLATFORMS),
    );
    let tr = priv_img.reference(&treg.addr());
    {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode("bench:pw");
        let cfg = serde_json::json!({"auths": {treg.addr(): {"auth": auth}}});
        std::fs::write(docker_cfg.join("config.json"), cfg.to_string()).unwrap();
    }
    let mut cmds = vec![
        (
            "archctl",
            format!("{env} {archctl} inspect --no-cache {tr}"),
        ),
        ("skopeo", format!("{skopeo} --creds bench:pw docker://{tr}")),
    ];
    if have_docker {
        cmds.push((
            "docker-manifest-inspect",
            format!(
                "env DOCKER_CONFIG={} docker manifest inspect --insecure {tr}",
                docker_cfg.display()
            ),
        ));
    }
    let rows = hyperfine("token", 30, &cmds, tmp.path());
    report(
        "token-auth repository (token flow with credentials)",
        &rows,
        "skopeo",
    );

    // 3. 200 repositories: one archctl call vs skopeo run sequentially.
    let many = push_many(&reg, 200);
    let list: Vec<String> = many.iter().map(|p| p.reference(&reg.addr())).collect();
    let script = tmp.path().join("skopeo-200.sh");
    let mut body = String::from("#!/bin/sh\nset -e\n");
    for r in &list {
        body.push_str(&format!("{skopeo} docker://{r} >/dev/null\n"));
    }
    std::fs::write(&script, body).unwrap();
    let cmds = vec![
        (
            "archctl",
            format!("{env} {archctl} inspect --no-cache {}", list.join(" ")),
        ),
        ("skopeo-sequential", format!("sh {}", script.display())),
    ];
    let rows = hyperfine("many", 5, &cmds, tmp.path());
    report(
        "200 repositories: one archctl call (concurrency 8) vs skopeo sequentially",
        &rows,
        "skopeo-sequential",
    );

    // 4. pick with a warm cache, and the overhead of `archctl run` over the engine.
    let cmds = vec![
        ("archctl-pick-warm", format!("{env} {archctl} pick {r}")),
        (
            "archctl-run-dry-run-warm",
            format!("{env} {archctl} run --dry-run --engine docker --rm {r}"),
        ),
    ];
    let rows = hyperfine("pick", 40, &cmds, tmp.path());
    report(
        "pick and run --dry-run, warm cache",
        &rows,
        "archctl-pick-warm",
    );
    if Command::new("dockerd").arg("--version").output().is_ok() && nix::unistd::geteuid().is_root()
    {
        let d = tmp.path().join("dockerd");
        std::fs::create_dir(&d).unwrap();
        let sock = format!("unix://{}", d.join("sock").display());
        let mut dockerd = Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("pid"))
            .args([
                "-H",
                &sock,
                "--iptables=false",
                "--ip-masq=false",
                "--bridge=none",
                "--ip-forward=false",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..300 {
            if Command::new("docker")
                .arg("version")
                .env("DOCKER_HOST", &sock)
                .output()
                .is_ok_and(|o| o.status.success())
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let native = if cfg!(target_arch = "aarch64") {
            "linux/arm64"
        } else {
            "linux/amd64"
        };
        let denv = format!("{env} DOCKER_HOST={sock}");
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("{denv} docker pull -q --platform {native} {r}"))
            .output();
        let cmds = vec![
            (
                "docker-run",
                format!("{denv} docker run --rm --network none --platform {native} {r}"),
            ),
            (
                "archctl-run",
                format!("{denv} {archctl} run --engine docker --rm --network none {r}"),
            ),
        ];
        let rows = hyperfine("run", 15, &cmds, tmp.path());
        report(
            "archctl run vs the plain engine command (image pulled, warm cache)",
            &rows,
            "docker-run",
        );
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(dockerd.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = dockerd.wait();
    }
    println!(
        "\ntargets: one image <= 0.67 of skopeo; 200 images <= 0.25 of skopeo sequential; warm cache <= 5 ms; pick warm <= 5 ms; run overhead <= 20 ms + one inspect when cold"
    );
}
