//! Credentials go only where they belong (issue #11, class 2), against hostile servers
//! on loopback: a mirror never gets the mirrored registry's credentials, nothing is
//! sent in clear text to a registry reached over HTTPS (redirects, token realms), and
//! nothing a credential helper writes is ever shown; helpers are bounded in output
//! and time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::registry::{DualSeen, DualServer, HttpResponse, OCI_CONFIG, OCI_MANIFEST, digest_of};
use support::{ARCHCTL, FakeServer, RegistryIsolated, Run, assert_code, assert_error_line};

/// Longest any archctl run here may take: a hang is a failure, not a stuck suite.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// An isolated environment: own cache, Docker config, daemon.json, registries.conf,
/// and a bin directory first on PATH for credential helpers.
struct Env {
    dir: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        for d in ["docker", "bin"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Env { dir, vars: vec![] }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn set(&mut self, k: &str, v: &str) {
        self.vars.push((k.into(), v.into()));
    }

    /// Docker's config.json.
    fn docker_config(&self, v: Value) {
        std::fs::write(self.path("docker/config.json"), v.to_string()).unwrap();
    }

    /// A `docker-credential-<name>` script on PATH; it reads the server URL from its
    /// stdin first, as real helpers do.
    fn helper(&self, name: &str, script: &str) {
        let p = self.path("bin").join(format!("docker-credential-{name}"));
        std::fs::write(&p, format!("#!/bin/sh\nread server\n{script}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }

    /// `archctl --json inspect --no-cache --timeout 10 ARGS`, killed (and the test
    /// failed) if it has not finished within [`RUN_LIMIT`]. Any proxy for a host that is
    /// not loopback is a dead port, so nothing here can reach the network.
    fn inspect(&self, args: &[&str]) -> Run {
        let mut c = Command::new(ARCHCTL);
        c.args(["--json", "inspect", "--no-cache", "--timeout", "10"])
            .args(args)
            .registry_isolated(self.path("cache"), self.path("docker"))
            .env("ARCHCTL_DOCKER_DAEMON_JSON", self.path("daemon.json"))
            .env("ARCHCTL_REGISTRIES_CONF", self.path("registries.conf"))
            .env("REGISTRY_AUTH_FILE", self.path("podman-auth.json"))
            .env("HOME", self.dir.path())
            .env("HTTPS_PROXY", "http://127.0.0.1:1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_CACHE_HOME")
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.path("bin").display(),
                    std::env::var("PATH").unwrap()
                ),
            );
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        run_bounded(&mut c, self.dir.path())
    }
}

/// Run `cmd` with its output in files under `dir`, killing it after [`RUN_LIMIT`].
fn run_bounded(cmd: &mut Command, dir: &Path) -> Run {
    let argv: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (out_path, err_path) = (dir.join("run.stdout"), dir.join("run.stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{argv:?} did not finish within {RUN_LIMIT:?}; stderr: {}",
                String::from_utf8_lossy(&std::fs::read(&err_path).unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::process::Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    };
    Run { argv, output }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn auths(entries: &[(&str, &str, &str)]) -> Value {
    use base64::Engine;
    let mut m = serde_json::Map::new();
    for (registry, user, password) in entries {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        m.insert(registry.to_string(), json!({ "auth": auth }));
    }
    json!({ "auths": m })
}

/// A one-platform OCI image made by hand: (manifest, its digest, config).
fn image() -> (Vec<u8>, String, Vec<u8>) {
    let config = json!({
        "architecture": "arm64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []}, "config": {}
    })
    .to_string()
    .into_bytes();
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(&config), "size": config.len()},
        "layers": []
    })
    .to_string()
    .into_bytes();
    let digest = digest_of(&manifest);
    (manifest, digest, config)
}

type Reply = (u16, Vec<(String, String)>, Vec<u8>);

/// What a registry serving [`image`] answers an authenticated request.
fn serve_image(path: &str) -> Reply {
    let (manifest, _, config) = image();
    if path.contains("/manifests/") {
        (
            200,
            vec![("Content-Type".into(), OCI_MANIFEST.into())],
            manifest,
        )
    } else if path.contains("/blobs/") {
        (200, vec![], config)
    } else {
        (200, vec![], b"{}".to_vec())
    }
}

fn challenge(value: &str) -> Reply {
    (401, vec![("WWW-Authenticate".into(), value.into())], vec![])
}

/// A registry wanting Basic `expected`, serving [`image`] to it.
fn basic_registry(expected: String) -> FakeServer {
    FakeServer::start(move |path, headers| {
        let auth = headers.iter().find(|(k, _)| k == "authorization");
        match auth {
            Some((_, v)) if *v == expected => serve_image(path),
            _ => challenge("Basic realm=\"fake\""),
        }
    })
}

fn authorizations(server: &FakeServer) -> Vec<String> {
    server
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, h)| h.iter().find(|(k, _)| k == "authorization"))
        .map(|(_, v)| v.clone())
        .collect()
}

fn requests(server: &FakeServer) -> usize {
    server.seen.lock().unwrap().len()
}

/// registries.conf: `registry` mirrored by `mirror` (plain HTTP).
fn registries_conf(env: &Env, registry: &str, mirror: &str) {
    std::fs::write(
        env.path("registries.conf"),
        format!(
            "[[registry]]\nlocation = \"{registry}\"\n[[registry.mirror]]\nlocation = \"{mirror}\"\ninsecure = true\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_mirror_never_gets_the_mirrored_registrys_credentials() {
    let upstream = basic_registry(basic("up", "upsecret"));
    let mirror = basic_registry(basic("mir", "mirsecret"));
    let env = Env::new();
    registries_conf(&env, &upstream.addr, &mirror.addr);
    env.docker_config(auths(&[(&upstream.addr, "up", "upsecret")]));
    let r = format!("{}/app:v1", upstream.addr);
    let out = env.inspect(&[&r]);
    // The mirror was asked, challenged, and got nothing; the registry got its own.
    assert!(requests(&mirror) > 0, "the mirror was not tried");
    assert_eq!(authorizations(&mirror), Vec::<String>::new());
    assert!(authorizations(&upstream).contains(&basic("up", "upsecret")));
    assert_code(&out, 0);
    assert_eq!(out.json()["images"][0]["digest"], image().1.as_str());
}

#[test]
fn a_mirror_with_its_own_credentials_gets_those() {
    let upstream = basic_registry(basic("up", "upsecret"));
    let mirror = basic_registry(basic("mir", "mirsecret"));
    let env = Env::new();
    registries_conf(&env, &upstream.addr, &mirror.addr);
    env.docker_config(auths(&[
        (&upstream.addr, "up", "upsecret"),
        (&mirror.addr, "mir", "mirsecret"),
    ]));
    let out = env.inspect(&[&format!("{}/app:v1", upstream.addr)]);
    let sent = authorizations(&mirror);
    assert!(sent.contains(&basic("mir", "mirsecret")), "{sent:?}");
    assert!(!sent.contains(&basic("up", "upsecret")), "{sent:?}");
    assert_code(&out, 0);
    assert_eq!(out.json()["images"][0]["digest"], image().1.as_str());
    // The mirror answered: the registry itself was never needed.
    assert_eq!(requests(&upstream), 0);
}

#[test]
fn a_docker_io_mirror_and_its_token_server_never_get_docker_hubs_credentials() {
    // daemon.json's registry-mirrors: a Bearer mirror whose token server records what
    // it is sent. Docker Hub credentials are stored; the mirror has none.
    let tokens = FakeServer::start(|_, _| {
        (
            200,
            vec![("Content-Type".into(), "application/json".into())],
            br#"{"token":"mirror-token"}"#.to_vec(),
        )
    });
    let realm = format!("http://{}/token", tokens.addr);
    let mirror = FakeServer::start(move |path, headers| {
        let auth = headers.iter().find(|(k, _)| k == "authorization");
        match auth {
            Some((_, v)) if v == "Bearer mirror-token" => serve_image(path),
            _ => challenge(&format!("Bearer realm=\"{realm}\",service=\"mirror\"")),
        }
    });
    let env = Env::new();
    std::fs::write(
        env.path("daemon.json"),
        json!({"registry-mirrors": [format!("http://{}", mirror.addr)]}).to_string(),
    )
    .unwrap();
    env.docker_config(auths(&[(
        "https://index.docker.io/v1/",
        "hub",
        "hubsecret",
    )]));
    let out = env.inspect(&["archctl-mirrored:v1"]);
    assert!(requests(&tokens) > 0, "no token was asked for");
    assert_eq!(authorizations(&tokens), Vec::<String>::new());
    assert!(!authorizations(&mirror).contains(&basic("hub", "hubsecret")));
    assert_code(&out, 0);
    assert_eq!(out.json()["images"][0]["digest"], image().1.as_str());
}

/// A registry on TLS at its port whose API, once authenticated, redirects to plain
/// HTTP on the same `host:port`; plain HTTP is answered as Go's TLS servers do.
fn downgrading_registry() -> DualServer {
    let addr: Arc<Mutex<String>> = Arc::default();
    let a2 = addr.clone();
    let srv = DualServer::start(move |req: &DualSeen| {
        let reply = |status, headers: Vec<(&str, String)>, body: &[u8]| HttpResponse {
            status,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            body: body.to_vec(),
        };
        if !req.tls {
            return reply(
                400,
                vec![],
                b"Client sent an HTTP request to an HTTPS server.\n",
            );
        }
        match req.authorization() {
            None => reply(
                401,
                vec![("WWW-Authenticate", "Basic realm=\"tls\"".into())],
                b"",
            ),
            Some(_) => {
                let to = format!("http://{}{}", a2.lock().unwrap(), req.target);
                reply(307, vec![("Location", to)], b"")
            }
        }
    });
    *addr.lock().unwrap() = srv.addr();
    srv
}

#[test]
fn an_https_registry_redirecting_to_plain_http_never_gets_credentials_in_clear_text() {
    let srv = downgrading_registry();
    let env = Env::new();
    env.docker_config(auths(&[(&srv.addr(), "tlsuser", "tlssecret")]));
    let out = env.inspect(&[&format!("{}/app:v1", srv.addr())]);
    let seen = srv.seen();
    assert!(
        seen.iter().any(|r| r.tls && r.authorization().is_some()),
        "the registry never got to redirect: {seen:?}"
    );
    for r in seen.iter().filter(|r| !r.tls) {
        assert_eq!(r.authorization(), None, "sent in clear text: {r:?}");
    }
    assert!(!out.stdout().contains("tlssecret") && !out.stderr().contains("tlssecret"));
    assert_code(&out, 1);
    assert_error_line(&out, "redirected from HTTPS to plain HTTP");
}

#[test]
fn redirects_from_an_https_registry_to_another_host_carry_no_credentials() {
    // The config blob lives on another host, over plain HTTP: followed, without them.
    let storage = FakeServer::start(|_, _| (200, vec![], image().2));
    let to = format!("http://{}/blob?sig=1", storage.addr);
    let srv = DualServer::start(move |req: &DualSeen| {
        let (status, headers, body) = if !req.tls {
            (
                400,
                vec![],
                b"Client sent an HTTP request to an HTTPS server.\n".to_vec(),
            )
        } else if req.authorization() != Some(basic("tlsuser", "tlssecret").as_str()) {
            challenge("Basic realm=\"tls\"")
        } else if req.target.contains("/blobs/") {
            (307, vec![("Location".into(), to.clone())], vec![])
        } else {
            serve_image(&req.target)
        };
        HttpResponse {
            status,
            headers,
            body,
        }
    });
    let env = Env::new();
    env.docker_config(auths(&[(&srv.addr(), "tlsuser", "tlssecret")]));
    let out = env.inspect(&[&format!("{}/app:v1", srv.addr())]);
    assert!(
        requests(&storage) > 0,
        "the blob did not come from the other host"
    );
    assert_eq!(authorizations(&storage), Vec::<String>::new());
    assert_code(&out, 0);
    assert_eq!(out.json()["images"][0]["digest"], image().1.as_str());
}

/// A registry on TLS wanting a Bearer token from `realm`, serving [`image`] with it.
fn bearer_tls_registry(realm: String) -> DualServer {
    DualServer::start(move |req: &DualSeen| {
        let (status, headers, body) = if !req.tls {
            (
                400,
                vec![],
                b"Client sent an HTTP request to an HTTPS server.\n".to_vec(),
            )
        } else if req.authorization() == Some("Bearer realm-token") {
            serve_image(&req.target)
        } else {
            challenge(&format!("Bearer realm=\"{realm}\",service=\"tls\""))
        };
        HttpResponse {
            status,
            headers,
            body,
        }
    })
}

fn token_reply() -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: br#"{"token":"realm-token"}"#.to_vec(),
    }
}

#[test]
fn a_plain_http_realm_of_an_https_registry_never_gets_credentials() {
    let tokens = FakeServer::start(|_, _| {
        let r = token_reply();
        (r.status, r.headers, r.body)
    });
    let srv = bearer_tls_registry(format!("http://{}/token", tokens.addr));
    let env = Env::new();
    env.docker_config(auths(&[(&srv.addr(), "tlsuser", "tlssecret")]));
    let out = env.inspect(&[&format!("{}/app:v1", srv.addr())]);
    assert_eq!(authorizations(&tokens), Vec::<String>::new());
    assert_code(&out, 1);
    assert_error_line(&out, "over plain HTTP");
}

#[test]
fn an_https_realm_on_another_host_gets_the_credentials_as_docker_sends_them() {
    let tokens = DualServer::start(|_| token_reply());
    let srv = bearer_tls_registry(format!("https://{}/token", tokens.addr()));
    let env = Env::new();
    env.docker_config(auths(&[(&srv.addr(), "tlsuser", "tlssecret")]));
    let out = env.inspect(&[&format!("{}/app:v1", srv.addr())]);
    assert_code(&out, 0);
    assert_eq!(out.json()["images"][0]["digest"], image().1.as_str());
    let seen = tokens.seen();
    assert!(
        seen.iter()
            .any(|r| r.tls && r.authorization() == Some(basic("tlsuser", "tlssecret").as_str())),
        "{seen:?}"
    );
    assert!(seen.iter().all(|r| r.tls), "{seen:?}");
}

/// A registry wanting Basic auth whose credentials come from the helper `name`.
fn with_helper(name: &str, script: &str) -> (Env, FakeServer) {
    let srv = basic_registry(basic("u", "p"));
    let env = Env::new();
    env.helper(name, script);
    env.docker_config(json!({"credHelpers": {srv.addr.clone(): name}}));
    (env, srv)
}

const SECRET: &str = "HELPER-SECRET-0xC0FFEE";

#[track_caller]
fn assert_secret_never_shown(out: &Run) {
    assert!(
        !out.stdout().contains(SECRET) && !out.stderr().contains(SECRET),
        "the helper's output was shown:\n{}",
        out.shown()
    );
}

#[test]
fn a_failing_credential_helper_s_output_is_never_shown() {
    // It prints the secret (and a would-be reply) on both streams, then fails.
    let (env, srv) = with_helper(
        "archctlfails",
        &format!(
            "echo x >> \"$0.calls\"\necho '{SECRET} {{\"Username\":\"u\",\"Secret\":\"{SECRET}\"}}'\necho '{SECRET}' >&2\nexit 1"
        ),
    );
    let (a, b) = (
        format!("{}/app:v1", srv.addr),
        format!("{}/other:v1", srv.addr),
    );
    let out = env.inspect(&[&a, &b]);
    assert_secret_never_shown(&out);
    assert_code(&out, 1);
    assert_error_line(&out, "docker-credential-archctlfails");
    assert!(out.stderr().contains("hint: "), "{}", out.shown());
    assert_eq!(requests(&srv), 0, "no request without the credentials");
    // Asked once for the run, not once per image.
    let calls = env.path("bin/docker-credential-archctlfails.calls");
    assert_eq!(std::fs::read_to_string(calls).unwrap().lines().count(), 1);
}

#[test]
fn a_credential_helper_s_reply_that_is_not_json_is_never_shown() {
    // Valid JSON, but a string, not the object: serde's message would quote it.
    let (env, srv) = with_helper("archctlbadjson", &format!("echo '\"{SECRET}\"'"));
    let out = env.inspect(&[&format!("{}/app:v1", srv.addr)]);
    assert_secret_never_shown(&out);
    assert_code(&out, 1);
    assert_error_line(&out, "docker-credential-archctlbadjson");
    // Nor a reply that is no JSON at all.
    let (env, srv) = with_helper("archctlnotjson", &format!("echo 'user={SECRET}'"));
    let out = env.inspect(&[&format!("{}/app:v1", srv.addr)]);
    assert_secret_never_shown(&out);
    assert_code(&out, 1);
}

#[test]
fn a_credential_helper_writing_without_end_is_stopped() {
    // 4 KiB at a time, never ending (paced, so that a client reading it all grows
    // slowly until the test's own limit).
    let (env, srv) = with_helper(
        "archctlendless",
        &format!("while :; do printf '{SECRET}%04000d\\n' 0; sleep 0.001; done"),
    );
    let started = Instant::now();
    let out = env.inspect(&[&format!("{}/app:v1", srv.addr)]);
    assert_code(&out, 1);
    assert_error_line(&out, "more than 64 KiB");
    assert_error_line(&out, "docker-credential-archctlendless");
    assert_secret_never_shown(&out);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_credential_helper_that_never_answers_times_out() {
    // A shell waiting on a child: the child keeps the pipes open after the shell is
    // killed, and must not keep archctl waiting.
    let (mut env, srv) = with_helper("archctlsleeps", "sleep 30");
    env.set("ARCHCTL_CREDENTIAL_HELPER_TIMEOUT", "2");
    let started = Instant::now();
    let out = env.inspect(&[&format!("{}/app:v1", srv.addr)]);
    let took = started.elapsed();
    assert_code(&out, 1);
    assert_error_line(&out, "no answer within 2 s");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
}
