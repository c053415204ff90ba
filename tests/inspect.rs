//! `archctl inspect` against real registries (Debian's docker-registry on 127.0.0.1):
//! media types, platforms and attestations, digests, auth flows, cache, faults.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::RunExt;

use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::Value;
use support::registry::{
    DOCKER_LIST, DOCKER_MANIFEST, FaultProxy, OCI_INDEX, OCI_MANIFEST, Pushed, Registry,
    RegistryAuth, TokenServer, push_fixtures, push_image, push_many,
};
use support::{ARCHCTL, FakeServer, assert_code, assert_error_line, stderr, stdout};

/// An isolated environment: own cache, no credentials or daemon.json of the host.
struct Env {
    dir: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n).display().to_string();
        std::fs::create_dir(dir.path().join("docker")).unwrap();
        let vars = vec![
            ("ARCHCTL_CACHE_DIR".into(), p("cache")),
            ("DOCKER_CONFIG".into(), p("docker")),
            ("REGISTRY_AUTH_FILE".into(), p("podman-auth.json")),
            ("ARCHCTL_DOCKER_DAEMON_JSON".into(), p("daemon.json")),
            ("ARCHCTL_REGISTRIES_CONF".into(), p("registries.conf")),
            ("HOME".into(), dir.path().display().to_string()),
        ];
        Env { dir, vars }
    }

    fn set(&mut self, k: &str, v: &str) {
        self.vars.push((k.into(), v.into()));
    }

    /// Docker's config.json with `auths` for a registry.
    fn docker_login(&self, registry: &str, user: &str, password: &str) {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let cfg = serde_json::json!({"auths": {registry: {"auth": auth}}});
        std::fs::write(self.dir.path().join("docker/config.json"), cfg.to_string()).unwrap();
    }

    fn daemon_json(&self, v: Value) {
        std::fs::write(self.dir.path().join("daemon.json"), v.to_string()).unwrap();
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn run(&self, args: &[&str]) -> support::Run {
        let mut c = Command::new(ARCHCTL);
        c.args(args)
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_CACHE_HOME");
        for k in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            c.env_remove(k);
        }
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c.run()
    }

    /// `archctl --json inspect ARGS`, parsed.
    fn inspect(&self, args: &[&str]) -> (support::Run, Value) {
        let mut a = vec!["--json", "inspect", "--timeout", "10"];
        a.extend_from_slice(args);
        let out = self.run(&a);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {}\nstderr: {}", stdout(&out), stderr(&out))
        });
        (out, v)
    }
}

fn platforms(img: &Value) -> Vec<(String, String)> {
    img["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s.push('/');
                s.push_str(v);
            }
            (s, p["digest"].as_str().unwrap().to_string())
        })
        .collect()
}

/// The platforms of a pushed index, in its order, as archctl should report them.
fn expected(p: &Pushed) -> Vec<(String, String)> {
    p.manifests.clone()
}

#[test]
fn every_manifest_kind_reports_its_platforms() {
    let reg = Registry::start(RegistryAuth::None);
    let f = push_fixtures(&reg);
    let env = Env::new();
    let refs: Vec<String> = [
        &f.oci_index,
        &f.docker_list,
        &f.docker_single,
        &f.oci_single,
        &f.attested,
        &f.mismatched,
    ]
    .iter()
    .map(|p| p.reference(&reg.addr()))
    .collect();
    let args: Vec<&str> = refs.iter().map(String::as_str).collect();
    let (out, v) = env.inspect(&args);
    assert_code(&out, 0);
    let imgs = v["images"].as_array().unwrap();
    assert_eq!(imgs.len(), 6);
    for (img, r) in imgs.iter().zip(&refs) {
        assert_eq!(img["reference"], r.as_str());
        assert_eq!(img["error"], Value::Null, "{img}");
    }
    // (a) OCI index: every platform with its manifest digest, in the registry's order.
    assert_eq!(imgs[0]["digest"], f.oci_index.digest.as_str());
    assert_eq!(imgs[0]["media_type"], OCI_INDEX);
    assert_eq!(platforms(&imgs[0]), expected(&f.oci_index));
    assert!(platforms(&imgs[0]).len() >= 6);
    let arm64 = imgs[0]["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["architecture"] == "arm64")
        .unwrap();
    assert_eq!(arm64["variant"], "v8");
    let amd64 = imgs[0]["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["architecture"] == "amd64")
        .unwrap();
    assert_eq!(amd64["variant"], Value::Null);
    // (b) Docker manifest list.
    assert_eq!(imgs[1]["media_type"], DOCKER_LIST);
    assert_eq!(platforms(&imgs[1]), expected(&f.docker_list));
    // (c, d) single manifests: the platform comes from the config blob.
    assert_eq!(imgs[2]["media_type"], DOCKER_MANIFEST);
    assert_eq!(
        platforms(&imgs[2]),
        vec![("linux/arm64".to_string(), f.docker_single.digest.clone())]
    );
    assert_eq!(imgs[3]["media_type"], OCI_MANIFEST);
    assert_eq!(
        platforms(&imgs[3]),
        vec![("linux/riscv64".to_string(), f.oci_single.digest.clone())]
    );
    // (e) attestations are not platforms, and are listed on their own.
    assert_eq!(platforms(&imgs[4]), expected(&f.attested));
    let att = imgs[4]["attestations"].as_array().unwrap();
    assert_eq!(att.len(), f.attested.attestations.len());
    for (a, p) in att.iter().zip(&f.attested.attestations) {
        assert_eq!(a["digest"], p.digest.as_str());
        assert_eq!(a["reference"], p.attests.as_str());
    }
    // (f) the index's label is what the registry offers.
    assert_eq!(platforms(&imgs[5])[0].0, "linux/arm64");
    // Human output: a compact table with the same facts.
    let out = env.run(&["inspect", &refs[0]]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("linux/arm/v7") && text.contains(&f.oci_index.digest),
        "{text}"
    );
}

#[test]
fn failures_are_per_image_and_named() {
    let reg = Registry::start(RegistryAuth::None);
    let good = push_image(
        &reg,
        "app/good",
        "v1",
        support::registry::ImageSpec::oci("linux/amd64"),
    );
    let env = Env::new();
    let a = reg.addr();
    let missing_digest = format!("{a}/app/good@sha256:{}", "0".repeat(64));
    let inputs = [
        good.reference(&a),
        format!("{a}/app/good:nope"),
        format!("{a}/app/nothing:v1"),
        "Not/Valid".to_string(),
        missing_digest.clone(),
        format!("{a}/app/good@{}", good.digest),
    ];
    let args: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let (out, v) = env.inspect(&args);
    assert_code(&out, 1);
    let imgs = v["images"].as_array().unwrap();
    let err = |i: usize| imgs[i]["error"].as_str().unwrap_or("").to_string();
    assert_eq!(imgs[0]["error"], Value::Null);
    assert!(err(1).contains("manifest unknown"), "{}", err(1));
    assert!(
        err(2).contains("repository app/nothing not found"),
        "{}",
        err(2)
    );
    assert!(
        err(3).contains("invalid image reference \"Not/Valid\"") && err(3).contains("lower case"),
        "{}",
        err(3)
    );
    assert!(err(4).contains("manifest unknown"), "{}", err(4));
    assert_eq!(imgs[5]["error"], Value::Null, "by digest");
    assert_eq!(imgs[5]["digest"], good.digest.as_str());
    // One error line on stderr that names each failure.
    let e = stderr(&out);
    assert_eq!(
        e.lines()
            .filter(|l| l.starts_with("archctl: error:"))
            .count(),
        1,
        "{e}"
    );
    assert_error_line(&out, "app/nothing");
}

#[test]
fn corrupted_blob_is_an_error_never_a_result() {
    let reg = Registry::start(RegistryAuth::None);
    let p = push_image(
        &reg,
        "app/corrupt",
        "v1",
        support::registry::ImageSpec::docker("linux/s390x"),
    );
    reg.corrupt_blob(&p.images[0].config_digest);
    let env = Env::new();
    let (out, v) = env.inspect(&[&p.reference(&reg.addr())]);
    assert_code(&out, 1);
    let e = v["images"][0]["error"].as_str().unwrap();
    assert!(e.contains("does not match its digest"), "{e}");
    assert!(v["images"][0]["platforms"].as_array().unwrap().is_empty());
    // Nothing corrupt was cached either.
    let (out, _) = env.inspect(&[&p.reference(&reg.addr())]);
    assert_code(&out, 1);
}

#[test]
fn basic_auth_with_docker_credentials() {
    let reg = Registry::start(RegistryAuth::Htpasswd {
        user: "bob",
        password: "s3cret",
    });
    let p = push_image(
        &reg,
        "private/app",
        "v1",
        support::registry::ImageSpec::oci_index(&["linux/amd64", "linux/arm64"]),
    );
    let r = p.reference(&reg.addr());
    let env = Env::new();
    let (out, v) = env.inspect(&[&r]);
    assert_code(&out, 1);
    assert!(
        v["images"][0]["error"]
            .as_str()
            .unwrap()
            .contains("unauthorized"),
        "{v}"
    );
    assert!(
        stderr(&out).contains(&format!("hint: docker login {}", reg.addr())),
        "{}",
        stderr(&out)
    );
    env.docker_login(&reg.addr(), "bob", "wrong");
    let (out, v) = env.inspect(&[&r]);
    assert_code(&out, 1);
    assert!(
        v["images"][0]["error"]
            .as_str()
            .unwrap()
            .contains("credentials were refused"),
        "{v}"
    );
    env.docker_login(&reg.addr(), "bob", "s3cret");
    let (out, v) = env.inspect(&[&r]);
    assert_code(&out, 0);
    assert_eq!(platforms(&v["images"][0]), expected(&p));
    // Credentials are never printed.
    assert!(!stdout(&out).contains("s3cret") && !stderr(&out).contains("s3cret"));
}

#[test]
fn token_auth_anonymous_credentials_and_caching() {
    let ts = TokenServer::start(&[("alice", "pw")], &["public/"]);
    let reg = Registry::start(RegistryAuth::Token(&ts));
    let public = push_image(
        &reg,
        "public/app",
        "v1",
        support::registry::ImageSpec::oci_index(&["linux/amd64", "linux/arm/v7"]),
    );
    let privs: Vec<Pushed> = (0..3)
        .map(|i| {
            push_image(
                &reg,
                "private/app",
                &format!("v{i}"),
                support::registry::ImageSpec::oci(["linux/amd64", "linux/arm64", "linux/s390x"][i]),
            )
        })
        .collect();
    let a = reg.addr();
    let mut env = Env::new();
    env.set("ARCHCTL_TAG_TTL", "0");
    // Anonymous pull of a public repository.
    let (out, v) = env.inspect(&["--no-cache", &public.reference(&a)]);
    assert_code(&out, 0);
    assert_eq!(platforms(&v["images"][0]), expected(&public));
    // A private one needs credentials.
    let (out, v) = env.inspect(&["--no-cache", &privs[0].reference(&a)]);
    assert_code(&out, 1);
    assert!(
        v["images"][0]["error"]
            .as_str()
            .unwrap()
            .contains("unauthorized"),
        "{v}"
    );
    env.docker_login(&a, "alice", "wrong");
    let (out, _) = env.inspect(&["--no-cache", &privs[0].reference(&a)]);
    assert_code(&out, 1);
    assert_error_line(&out, "credentials were refused");
    env.docker_login(&a, "alice", "pw");
    ts.clear_log();
    let refs: Vec<String> = privs.iter().map(|p| p.reference(&a)).collect();
    let args: Vec<&str> = std::iter::once("--no-cache")
        .chain(refs.iter().map(String::as_str))
        .collect();
    let (out, v) = env.inspect(&args);
    assert_code(&out, 0);
    for (img, p) in v["images"].as_array().unwrap().iter().zip(&privs) {
        assert_eq!(img["digest"], p.digest.as_str());
    }
    // One token for the repository serves all three images (cached per registry + scope).
    assert_eq!(ts.count_path("/token"), 1, "{:?}", ts.log().len());
    // Token server down: a clear error.
    let mut ts = ts;
    ts.stop();
    let (out, _) = env.inspect(&["--no-cache", &refs[0]]);
    assert_code(&out, 1);
    assert_error_line(&out, "auth server");
}

#[test]
fn credential_helper_is_used() {
    let reg = Registry::start(RegistryAuth::Htpasswd {
        user: "carol",
        password: "hunter2",
    });
    let p = push_image(
        &reg,
        "helper/app",
        "v1",
        support::registry::ImageSpec::oci("linux/amd64"),
    );
    let mut env = Env::new();
    let bin = env.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-archctltest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\n[ \"$server\" = \"{}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\necho '{{\"ServerURL\":\"'$server'\",\"Username\":\"carol\",\"Secret\":\"hunter2\"}}'\n",
            reg.addr()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        env.dir.path().join("docker/config.json"),
        r#"{"credsStore": "archctltest"}"#,
    )
    .unwrap();
    env.set(
        "PATH",
        &format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
    );
    let (out, v) = env.inspect(&[&p.reference(&reg.addr())]);
    assert_code(&out, 0);
    assert_eq!(v["images"][0]["digest"], p.digest.as_str());
}

#[test]
fn cache_makes_repeats_free_and_no_cache_bypasses_it() {
    let reg = Registry::start(RegistryAuth::None);
    let p = push_image(
        &reg,
        "cached/app",
        "v1",
        support::registry::ImageSpec::docker("linux/arm64"),
    );
    let proxy = FaultProxy::start(&reg.addr());
    let r = p.reference(&proxy.addr());
    let env = Env::new();
    let (out, first) = env.inspect(&[&r]);
    assert_code(&out, 0);
    let n = proxy.requests();
    assert!(n >= 2, "manifest + config: {n}");
    let (out, second) = env.inspect(&[&r]);
    assert_code(&out, 0);
    assert_eq!(first, second);
    assert_eq!(proxy.requests(), n, "a warm cache costs no request");
    let (out, _) = env.inspect(&["--no-cache", &r]);
    assert_code(&out, 0);
    assert!(proxy.requests() > n);
    assert!(env.cache_dir().join("blobs/sha256").is_dir());
    // Tampered cache entries are detected and refetched, never believed.
    for e in std::fs::read_dir(env.cache_dir().join("blobs/sha256")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none() {
            std::fs::write(&path, b"{\"tampered\": true}").unwrap();
        }
    }
    let before = proxy.requests();
    let (out, third) = env.inspect(&[&r]);
    assert_code(&out, 0);
    assert_eq!(third, first);
    assert!(proxy.requests() > before);
}

#[test]
fn transient_faults_are_retried_and_hard_ones_reported() {
    let mut reg = Registry::start(RegistryAuth::None);
    let p = push_image(
        &reg,
        "faulty/app",
        "v1",
        support::registry::ImageSpec::oci_index(&["linux/amd64", "linux/ppc64le"]),
    );
    let proxy = FaultProxy::start(&reg.addr());
    let r = p.reference(&proxy.addr());
    let env = Env::new();
    // 503 twice, then success.
    proxy.fail_next(2, 503, None);
    let (out, v) = env.inspect(&["--no-cache", &r]);
    assert_code(&out, 0);
    assert_eq!(v["images"][0]["digest"], p.digest.as_str());
    // 429 with Retry-After.
    proxy.fail_next(1, 429, Some(1));
    let t = std::time::Instant::now();
    let (out, _) = env.inspect(&["--no-cache", &r]);
    assert_code(&out, 0);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "Retry-After not honoured"
    );
    // A dropped connection.
    proxy.reset_next(1);
    let (out, _) = env.inspect(&["--no-cache", &r]);
    assert_code(&out, 0);
    // Persistent 500: bounded retries, then the error.
    proxy.fail_next(20, 500, None);
    let before = proxy.requests();
    let (out, _) = env.inspect(&["--no-cache", &r]);
    assert_code(&out, 1);
    assert_error_line(&out, "500");
    assert!(
        proxy.requests() - before <= 4 + 1,
        "retries are bounded: {}",
        proxy.requests() - before
    );
    proxy.clear_faults();
    // A slow server hits the timeout.
    proxy.delay(Duration::from_secs(3));
    let t = std::time::Instant::now();
    let out = env.run(&["inspect", "--no-cache", "--timeout", "1", &r]);
    assert_code(&out, 1);
    assert_error_line(&out, "timed out");
    assert!(t.elapsed() < Duration::from_secs(10));
    proxy.delay(Duration::ZERO);
    // Registry stopped: connection refused, with a hint.
    reg.stop();
    let out = env.run(&[
        "inspect",
        "--no-cache",
        "--timeout",
        "5",
        &p.reference(&reg.addr()),
    ]);
    assert_code(&out, 1);
    assert_error_line(&out, "connection refused");
    assert!(stderr(&out).contains("hint:"), "{}", stderr(&out));
}

#[test]
fn many_images_concurrently_keep_their_order() {
    let reg = Registry::start(RegistryAuth::None);
    let pushed = push_many(&reg, 40);
    let env = Env::new();
    let refs: Vec<String> = pushed.iter().map(|p| p.reference(&reg.addr())).collect();
    let mut args = vec!["--concurrency", "8"];
    args.extend(refs.iter().map(String::as_str));
    let (out, v) = env.inspect(&args);
    assert_code(&out, 0);
    let imgs = v["images"].as_array().unwrap();
    assert_eq!(imgs.len(), 40);
    for (img, p) in imgs.iter().zip(&pushed) {
        assert_eq!(img["digest"], p.digest.as_str());
    }
    let out = env.run(&["inspect", "--concurrency", "0", &refs[0]]);
    assert_code(&out, 2);
}

#[test]
fn docker_io_mirrors_from_daemon_json_are_used() {
    // A mirror serving docker.io's library/ namespace; the first mirror is down.
    let mirror = Registry::start(RegistryAuth::None);
    let p = push_image(
        &mirror,
        "library/archctl-mirrored",
        "v1",
        support::registry::ImageSpec::oci_index(&["linux/amd64", "linux/arm64"]),
    );
    let env = Env::new();
    let dead = support::registry::free_port();
    env.daemon_json(serde_json::json!({
        "registry-mirrors": [format!("http://127.0.0.1:{dead}"), format!("http://{}", mirror.addr())]
    }));
    let (out, v) = env.inspect(&["archctl-mirrored:v1"]);
    assert_code(&out, 0);
    assert_eq!(
        v["images"][0]["reference"],
        "docker.io/library/archctl-mirrored:v1"
    );
    assert_eq!(v["images"][0]["digest"], p.digest.as_str());
}

#[test]
fn registries_conf_mirrors_with_a_namespace() {
    // podman-style: [[registry]] docker.io with a mirror that serves it under hub/.
    let mirror = Registry::start(RegistryAuth::None);
    let p = push_image(
        &mirror,
        "hub/library/archctl-conf-mirrored",
        "v1",
        support::registry::ImageSpec::oci("linux/arm64"),
    );
    let env = Env::new();
    std::fs::write(
        env.dir.path().join("registries.conf"),
        format!(
            "[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"{}/hub\"\ninsecure = true\n",
            mirror.addr()
        ),
    )
    .unwrap();
    let (out, v) = env.inspect(&["archctl-conf-mirrored:v1"]);
    assert_code(&out, 0);
    assert_eq!(v["images"][0]["digest"], p.digest.as_str());
}

#[test]
fn broken_daemon_json_is_reported() {
    let env = Env::new();
    std::fs::write(env.dir.path().join("daemon.json"), "{ not json").unwrap();
    let out = env.run(&["inspect", "127.0.0.1:1/x:y"]);
    assert_code(&out, 1);
    assert_error_line(&out, "daemon.json");
}

#[test]
fn registry_stopped_mid_run_fails_the_rest_cleanly() {
    let mut reg = Registry::start(RegistryAuth::None);
    let pushed = push_many(&reg, 12);
    let proxy = FaultProxy::start(&reg.addr());
    proxy.delay(Duration::from_millis(150));
    let env = Env::new();
    let refs: Vec<String> = pushed.iter().map(|p| p.reference(&proxy.addr())).collect();
    let mut cmd = Command::new(ARCHCTL);
    cmd.args([
        "--json",
        "inspect",
        "--no-cache",
        "--concurrency",
        "2",
        "--timeout",
        "5",
    ])
    .args(&refs)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    for (k, v) in &env.vars {
        cmd.env(k, v);
    }
    let t = std::time::Instant::now();
    let child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    reg.stop();
    let out = child.wait_with_output().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "bounded: {:?}",
        t.elapsed()
    );
    assert_code(&out, 1);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let imgs = v["images"].as_array().unwrap();
    assert_eq!(imgs.len(), 12);
    let ok = imgs.iter().filter(|i| i["error"].is_null()).count();
    assert!((1..12).contains(&ok), "{ok} of 12 succeeded");
    for (img, p) in imgs.iter().zip(&pushed) {
        if img["error"].is_null() {
            assert_eq!(img["digest"], p.digest.as_str());
        } else {
            assert!(img["platforms"].as_array().unwrap().is_empty());
        }
    }
}

#[test]
fn oversized_manifests_are_refused() {
    let big = vec![b' '; 5 * 1024 * 1024];
    let srv = FakeServer::start(move |path, _| {
        if path.contains("/manifests/") {
            (
                200,
                vec![("Content-Type".into(), OCI_INDEX.into())],
                big.clone(),
            )
        } else {
            (200, vec![], b"{}".to_vec())
        }
    });
    let env = Env::new();
    let (out, v) = env.inspect(&["--no-cache", &format!("{}/big/image:v1", srv.addr)]);
    assert_code(&out, 1);
    let e = v["images"][0]["error"].as_str().unwrap();
    assert!(e.contains("4194304"), "{e}");
}

#[test]
fn redirects_to_another_host_carry_no_credentials() {
    // The config blob is "stored" on another host; the registry wants Basic auth.
    let reg = Registry::start(RegistryAuth::None);
    let p = push_image(
        &reg,
        "redir/app",
        "v1",
        support::registry::ImageSpec::oci("linux/arm64"),
    );
    let manifest = p.raw.clone();
    let config = p.images[0].config.clone();
    let storage = FakeServer::start(move |_, _| (200, vec![], config.clone()));
    let storage_addr = storage.addr.clone();
    let srv = FakeServer::start(move |path, headers| {
        let authed = headers
            .iter()
            .any(|(k, v)| k == "authorization" && v.starts_with("Basic "));
        if !authed {
            return (
                401,
                vec![("WWW-Authenticate".into(), "Basic realm=\"fake\"".into())],
                vec![],
            );
        }
        if path.contains("/manifests/") {
            (
                200,
                vec![("Content-Type".into(), OCI_MANIFEST.into())],
                manifest.clone(),
            )
        } else if path.contains("/blobs/") {
            (
                307,
                vec![(
                    "Location".into(),
                    format!("http://{storage_addr}/data?sig=1"),
                )],
                vec![],
            )
        } else {
            (200, vec![], b"{}".to_vec())
        }
    });
    let env = Env::new();
    env.docker_login(&srv.addr, "user", "topsecret");
    let (out, v) = env.inspect(&["--no-cache", &format!("{}/redir/app:v1", srv.addr)]);
    assert_code(&out, 0);
    assert_eq!(platforms(&v["images"][0])[0].0, "linux/arm64");
    let seen = storage.seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the blob came from the other host");
    for (_, headers) in seen {
        assert!(
            !headers.iter().any(|(k, _)| k == "authorization"),
            "credentials leaked: {headers:?}"
        );
    }
}

#[test]
fn podman_auth_file_is_used() {
    let reg = Registry::start(RegistryAuth::Htpasswd {
        user: "dora",
        password: "pw9",
    });
    let p = push_image(
        &reg,
        "podman/app",
        "v1",
        support::registry::ImageSpec::oci("linux/s390x"),
    );
    let env = Env::new();
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("dora:pw9");
    std::fs::write(
        env.dir.path().join("podman-auth.json"),
        serde_json::json!({"auths": {reg.addr(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let (out, v) = env.inspect(&[&p.reference(&reg.addr())]);
    assert_code(&out, 0);
    assert_eq!(v["images"][0]["digest"], p.digest.as_str());
}

#[test]
fn schema1_and_unknown_media_types_are_clear_errors() {
    let srv = FakeServer::start(|path, _| {
        if path.contains("/old/") {
            (
                200,
                vec![(
                    "Content-Type".into(),
                    "application/vnd.docker.distribution.manifest.v1+prettyjws".into(),
                )],
                br#"{"schemaVersion":1,"name":"old/app","tag":"v1","fsLayers":[]}"#.to_vec(),
            )
        } else {
            (
                200,
                vec![(
                    "Content-Type".into(),
                    "application/vnd.example.thing+json".into(),
                )],
                b"{}".to_vec(),
            )
        }
    });
    let env = Env::new();
    let (out, v) = env.inspect(&[
        "--no-cache",
        &format!("{}/old/app:v1", srv.addr),
        &format!("{}/odd/app:v1", srv.addr),
    ]);
    assert_code(&out, 1);
    assert!(
        v["images"][0]["error"]
            .as_str()
            .unwrap()
            .contains("schema 1"),
        "{v}"
    );
    assert!(
        v["images"][1]["error"]
            .as_str()
            .unwrap()
            .contains("application/vnd.example.thing+json"),
        "{v}"
    );
    assert!(stderr(&out).contains("hint: re-push"), "{}", stderr(&out));
}

#[test]
fn proxies_from_the_environment_are_used() {
    let reg = Registry::start(RegistryAuth::None);
    let p = push_image(
        &reg,
        "proxied/app",
        "v1",
        support::registry::ImageSpec::oci("linux/amd64"),
    );
    // A forward proxy: requests arrive in absolute form and are passed on.
    let proxy = FakeServer::start(|target, headers| {
        let Some(rest) = target.strip_prefix("http://") else {
            return (400, vec![], b"not a proxy request".to_vec());
        };
        let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let fwd: Vec<(String, String)> = headers
            .iter()
            .filter(|(k, _)| k == "accept" || k == "authorization")
            .cloned()
            .collect();
        match support::registry::http_exchange(addr, "GET", path, &fwd, b"") {
            Ok(r) => {
                let keep: Vec<(String, String)> = r
                    .headers
                    .into_iter()
                    .filter(|(k, _)| {
                        let k = k.to_ascii_lowercase();
                        k == "content-type"
                            || k == "docker-content-digest"
                            || k == "www-authenticate"
                    })
                    .collect();
                (r.status, keep, r.body)
            }
            Err(e) => (502, vec![], e.to_string().into_bytes()),
        }
    });
    let mut env = Env::new();
    env.set("HTTP_PROXY", &format!("http://{}", proxy.addr));
    env.set("NO_PROXY", "");
    let (out, v) = env.inspect(&["--no-cache", &p.reference(&reg.addr())]);
    assert_code(&out, 0);
    assert_eq!(v["images"][0]["digest"], p.digest.as_str());
    let seen = proxy.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(t, _)| t.contains("/v2/proxied/app/manifests/v1")),
        "the proxy saw no request: {seen:?}"
    );
}

#[test]
fn verify_platforms_reports_configs_that_contradict_the_index() {
    let reg = Registry::start(RegistryAuth::None);
    let f = push_fixtures(&reg);
    let env = Env::new();
    let (out, v) = env.inspect(&[
        "--verify-platforms",
        &f.mismatched.reference(&reg.addr()),
        &f.oci_index.reference(&reg.addr()),
    ]);
    assert_code(&out, 0);
    let bad = &v["images"][0]["platforms"][0];
    assert_eq!(bad["architecture"], "arm64");
    assert_eq!(bad["config_platform"], "linux/amd64");
    assert_eq!(bad["mismatch"], true);
    // The truth check agrees: the program in the layer is amd64.
    assert_eq!(bad["label_matches"], false, "{bad}");
    assert_eq!(bad["elf"]["machine"], "X86_64", "{bad}");
    assert!(
        stderr(&out).contains("config says linux/amd64"),
        "{}",
        stderr(&out)
    );
    for p in v["images"][1]["platforms"].as_array().unwrap() {
        assert_eq!(p["mismatch"], false, "{p}");
        // Each test program runs on its label (placeholder layers have no ELF: null).
        let label = format!(
            "{}/{}",
            p["os"].as_str().unwrap(),
            p["architecture"].as_str().unwrap()
        );
        let want = match support::registry::test_program_target(&label) {
            Some(_) => Value::Bool(true),
            None => Value::Null,
        };
        assert_eq!(p["label_matches"], want, "{p}");
    }
    // Without the flag, the fields are absent (the index is what the registry offers).
    let (_, v) = env.inspect(&[&f.mismatched.reference(&reg.addr())]);
    assert!(v["images"][0]["platforms"][0].get("mismatch").is_none());
    assert!(
        v["images"][0]["platforms"][0]
            .get("label_matches")
            .is_none()
    );
    assert!(v["images"][0]["platforms"][0].get("truth").is_none());
}

#[test]
fn one_registrys_wrong_media_type_never_poisons_another_images_cached_manifest() {
    let env = Env::new();
    let reg = Registry::start(RegistryAuth::None);
    let f = push_fixtures(&reg);
    let index = f.oci_index.clone();
    // A registry that serves the same index bytes (so the same digest) labelled as an
    // image manifest.
    let raw = index.raw.clone();
    let evil = FakeServer::start(move |target, _| {
        if target.starts_with("/v2/") && target.contains("/manifests/") {
            (
                200,
                vec![(
                    "Content-Type".into(),
                    "application/vnd.oci.image.manifest.v1+json".into(),
                )],
                raw.clone(),
            )
        } else {
            (
                200,
                vec![("Content-Type".into(), "application/json".into())],
                b"{}".to_vec(),
            )
        }
    });
    let (_, _) = env.inspect(&[&format!("{}/evil/x@{}", evil.addr, index.digest)]);
    // The real image by the same digest, through the same cache: its platforms.
    let (out, v) = env.inspect(&[&index
        .reference(&reg.addr())
        .replace(&format!(":{}", index.tag), &format!("@{}", index.digest))]);
    assert_code(&out, 0);
    assert_eq!(platforms(&v["images"][0]), expected(&index), "{v}");
}

#[test]
fn no_ca_certificates_is_a_clear_error_and_plain_loopback_still_works() {
    // A minimal system (a scratch container, a small guest) without ca-certificates:
    // SSL_CERT_FILE and SSL_CERT_DIR name nothing.
    let reg = Registry::start(RegistryAuth::None);
    let img = push_image(
        &reg,
        "app/plain",
        "v1",
        support::registry::ImageSpec::oci("linux/amd64"),
    );
    let mut env = Env::new();
    let empty = env.dir.path().join("no-certs");
    std::fs::create_dir(&empty).unwrap();
    env.set("SSL_CERT_DIR", empty.to_str().unwrap());
    env.set("SSL_CERT_FILE", empty.join("none.pem").to_str().unwrap());
    // A registry over TLS (.invalid never resolves: the client fails before any lookup).
    let (out, v) = env.inspect(&["--no-cache", "registry.invalid/app/x:v1"]);
    assert_code(&out, 1);
    let err = v["images"][0]["error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with("cannot verify TLS: no usable CA certificates on this system"),
        "{err}"
    );
    assert!(
        stderr(&out).contains("hint: install the CA certificates"),
        "{}",
        stderr(&out)
    );
    // A loopback registry over plain HTTP needs no certificates.
    let (out, v) = env.inspect(&["--no-cache", &img.reference(&reg.addr())]);
    assert_code(&out, 0);
    assert_eq!(v["images"][0]["digest"], img.digest.as_str());
}
