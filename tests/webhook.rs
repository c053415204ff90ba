//! `archctl webhook serve` on its own (`--no-api`): its TLS, what it answers to requests
//! that are not AdmissionReviews, bodies past the limit, a pod with pull secrets and no
//! API, and the errors at start. The placement itself, against a real API server, is
//! tests/kubernetes.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine;
use serde_json::{Value, json};
use support::{ARCHCTL, RunExt, assert_code, assert_error_line, registry::free_port};

struct Webhook {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Webhook {
    fn start() -> Webhook {
        Webhook::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Webhook {
        let dir = tempfile::tempdir().unwrap();
        support::kube::ca_and_server_certificate(dir.path());
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(ARCHCTL)
            .args([
                "--json",
                "webhook",
                "serve",
                "--no-api",
                "--listen",
                &addr,
                "--tls-cert",
            ])
            .arg(dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path().join("tls.key"))
            .args(extra)
            .env("ARCHCTL_CACHE_DIR", dir.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .unwrap();
        let w = Webhook { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !w.log().contains("serving https://") {
            assert!(Instant::now() < deadline, "did not start: {}", w.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        w
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// (HTTP status, body) of a request through curl, the CA trusted.
    fn curl(&self, method: &str, path: &str, body: Option<&Path>) -> (u16, String) {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "20", "-X", method, "--cacert"])
            .arg(self.dir.path().join("ca.crt"))
            .args(["-w", "\n%{http_code}"]);
        if let Some(b) = body {
            c.arg("--data-binary").arg(format!("@{}", b.display()));
        }
        let out = c
            .arg(format!("https://{}{path}", self.addr))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    fn review(&self, review: &Value) -> (u16, String) {
        let f = self.dir.path().join("review.json");
        std::fs::write(&f, review.to_string()).unwrap();
        self.curl("POST", "/mutate", Some(&f))
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pod_review(spec: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
           "request": {"uid": "4b1c-uid", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                       "operation": "CREATE", "namespace": "team",
                       "object": {"metadata": {"name": "p"}, "spec": spec}}})
}

fn patch_of(body: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["response"]["uid"], "4b1c-uid", "{v}");
    assert_eq!(v["response"]["allowed"], true, "{v}");
    v["response"]["patch"].as_str().map(|p| {
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(p).unwrap())
            .unwrap()
    })
}

#[test]
fn answers_only_admission_reviews_and_bounds_the_body() {
    let w = Webhook::start();
    let junk = w.dir.path().join("junk");
    std::fs::write(&junk, "{not json").unwrap();
    let (code, body) = w.curl("POST", "/mutate", Some(&junk));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not JSON"), "{body}");
    let (code, body) = w.review(&json!({"apiVersion": "v1", "kind": "Pod"}));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("AdmissionReview"), "{body}");
    let (code, _) = w.review(
        &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}),
    );
    assert_eq!(code, 400);
    let big = w.dir.path().join("big");
    std::fs::write(&big, vec![b' '; 9 * 1024 * 1024]).unwrap();
    let (code, body) = w.curl("POST", "/mutate", Some(&big));
    assert_eq!(code, 413, "{body}");
    assert_eq!(w.curl("GET", "/nothing", None).0, 404);
    assert_eq!(w.curl("GET", "/healthz", None).0, 200);
    let (code, metrics) = w.curl("GET", "/metrics", None);
    assert_eq!(code, 200);
    assert!(
        metrics.contains("archctl_webhook_bad_requests_total 3"),
        "{metrics}"
    );
    // It still serves after all that.
    let (code, body) = w.review(&pod_review(
        json!({"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]}),
    ));
    assert_eq!(code, 200);
    assert_eq!(patch_of(&body), None, "a pod with nodeName is untouched");
}

#[test]
fn fails_open_without_api_for_pull_secrets_and_unreachable_registries() {
    let w = Webhook::start();
    let (code, body) = w.review(&pod_review(json!({
        "imagePullSecrets": [{"name": "reg"}],
        "containers": [{"name": "c", "image": "127.0.0.1:1/private:v1"}]})));
    assert_eq!(code, 200, "{body}");
    let p = patch_of(&body).unwrap();
    assert_eq!(p[0]["path"], "/metadata/annotations");
    assert_eq!(
        p[0]["value"]["archctl.io/placement"],
        "skipped: the pod names pull secrets and the webhook runs with --no-api"
    );
    let (_, body) = w.review(&pod_review(
        json!({"containers": [{"name": "c", "image": "127.0.0.1:1/x:v1"}]}),
    ));
    let p = patch_of(&body).unwrap();
    assert!(
        p[0]["value"]["archctl.io/placement"]
            .as_str()
            .unwrap()
            .starts_with("skipped: 127.0.0.1:1/x:v1: "),
        "{p}"
    );
    // A DELETE (or anything but a Pod CREATE) is allowed untouched.
    let mut r = pod_review(json!({"containers": []}));
    r["request"]["operation"] = json!("DELETE");
    let (_, body) = w.review(&r);
    assert_eq!(patch_of(&body), None);
    // SIGTERM: a report of what it did, exit 0.
    let mut w = w;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(w.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = w.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", w.log());
    let mut out = String::new();
    std::io::Read::read_to_string(w.child.stdout.as_mut().unwrap(), &mut out).unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["skipped"], 2, "{v}");
    assert_eq!(v["untouched"], 1, "{v}");
    assert_eq!(v["stopped_by"], "SIGTERM");
}

#[test]
fn bad_certificates_and_flags_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    support::kube::ca_and_server_certificate(dir.path());
    let d = |f: &str| -> PathBuf { dir.path().join(f) };
    let serve = |cert: &Path, key: &Path, extra: &[&str]| {
        Command::new(ARCHCTL)
            .args([
                "webhook",
                "serve",
                "--no-api",
                "--listen",
                "127.0.0.1:0",
                "--tls-cert",
            ])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(extra)
            .run()
    };
    let out = serve(&d("missing.crt"), &d("tls.key"), &[]);
    assert_code(&out, 1);
    assert_error_line(&out, "TLS certificate");
    assert!(support::stderr(&out).contains("hint: "), "{}", out.shown());
    // The key of another certificate.
    let out = serve(&d("tls.crt"), &d("ca.key"), &[]);
    assert_code(&out, 1);
    assert_error_line(&out, "does not go with the certificate");
    let out = serve(&d("ext"), &d("tls.key"), &[]);
    assert_code(&out, 1);
    assert_error_line(&out, "no PEM CERTIFICATE");
    let out = serve(&d("tls.crt"), &d("tls.key"), &["--budget-ms", "5"]);
    assert_code(&out, 2);
    let out = serve(&d("tls.crt"), &d("tls.key"), &["--preferred-weight", "101"]);
    assert_code(&out, 2);
    let out = Command::new(ARCHCTL)
        .args([
            "webhook",
            "serve",
            "--tls-cert",
            "a",
            "--tls-key",
            "b",
            "--no-api",
            "--kubeconfig",
            "k",
        ])
        .run();
    assert_code(&out, 2);
    // A port in use.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = l.local_addr().unwrap().to_string();
    let out = Command::new(ARCHCTL)
        .args([
            "webhook",
            "serve",
            "--no-api",
            "--listen",
            &taken,
            "--tls-cert",
        ])
        .arg(d("tls.crt"))
        .arg("--tls-key")
        .arg(d("tls.key"))
        .run();
    assert_code(&out, 1);
    assert_error_line(&out, &format!("listen on {taken}"));
}

#[test]
fn a_registry_that_never_answers_is_cut_off_at_the_budget() {
    // Accepts connections (the kernel's backlog) and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let image = format!("{}/slow/app:v1", silent.local_addr().unwrap());
    let w = Webhook::start_with(&["--budget-ms", "700"]);
    let t = Instant::now();
    let (code, body) = w.review(&pod_review(
        json!({"containers": [{"name": "c", "image": image}]}),
    ));
    let took = t.elapsed();
    assert_eq!(code, 200, "{body}");
    let p = patch_of(&body).unwrap();
    let a = p[0]["value"]["archctl.io/placement"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(a.starts_with("skipped: "), "{a}");
    assert!(
        a.contains("700 ms") || a.contains("timed out") || a.contains("timeout"),
        "{a}"
    );
    // Answered (curl allows 20 s; the registry never answers): the budget decided,
    // and not before it was spent.
    assert!(took >= Duration::from_millis(690), "{took:?}");
    drop(silent);
}
