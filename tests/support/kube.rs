//! A real Kubernetes control plane for the tests (tests/kubernetes/control-plane.sh:
//! etcd, kube-apiserver, kube-controller-manager, kube-scheduler v1.20 on 127.0.0.1),
//! one per test binary, started by the first test that asks ([`shared`]) and stopped
//! when the test process ends (the script's watchers follow this process's pid), plus
//! the API calls the tests make, through curl (the token and CA of the state dir).

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// The control-plane script.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kubernetes/control-plane.sh")
}

/// Where the three binaries are: ARCHCTL_K8S_BIN, else target/kubernetes/bin (what
/// `control-plane.sh build` makes, and CI runs before the tests).
pub fn bin_dir() -> PathBuf {
    std::env::var_os("ARCHCTL_K8S_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kubernetes/bin"),
        PathBuf::from,
    )
}

/// Why a control plane cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    for c in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        if !bin_dir().join(c).is_file() {
            return Some(format!(
                "{} missing: run `bash tests/kubernetes/control-plane.sh build` (or set ARCHCTL_K8S_BIN)",
                bin_dir().join(c).display()
            ));
        }
    }
    for (tool, pkg) in [
        ("etcd", "etcd-server"),
        ("curl", "curl"),
        ("openssl", "openssl"),
    ] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(format!("{tool} (Debian package {pkg}) not installed"));
        }
    }
    None
}

/// The calling test's control plane (started once per test binary), or a skip (a
/// failure under CI) with the reason.
#[macro_export]
macro_rules! require_kube {
    () => {{
        let unavailable = support::kube::unavailable();
        $crate::skip_unless!(unavailable.is_none(), "{}", unavailable.unwrap_or_default());
        support::kube::shared()
    }};
}

pub struct ControlPlane {
    pub state: PathBuf,
    pub server: String,
    pub token: String,
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub kubeconfig: PathBuf,
}

/// The test binary's control plane.
pub fn shared() -> &'static ControlPlane {
    static CP: OnceLock<ControlPlane> = OnceLock::new();
    CP.get_or_init(ControlPlane::start)
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl ControlPlane {
    fn start() -> ControlPlane {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // State directories of test processes that are gone (their control planes
        // stopped with them) are removed.
        if let Ok(rd) = std::fs::read_dir(base) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("k8s-").and_then(|p| p.parse().ok())
                    && !pid_alive(pid)
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let state = base.join(format!("k8s-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        let t = Instant::now();
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(&state)
            .env("ARCHCTL_K8S_BIN", bin_dir())
            .env("ARCHCTL_K8S_OWNER", std::process::id().to_string())
            .output()
            .expect("run control-plane.sh");
        assert!(
            out.status.success(),
            "control-plane.sh start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "control plane ready in {:.1} s ({})",
            t.elapsed().as_secs_f64(),
            state.display()
        );
        let env = std::fs::read_to_string(state.join("env")).unwrap();
        let get = |k: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{k} missing in {}/env", state.display()))
                .to_string()
        };
        ControlPlane {
            server: get("ARCHCTL_K8S_SERVER"),
            token: get("ARCHCTL_K8S_TOKEN"),
            ca: state.join("ca.crt"),
            ca_key: state.join("ca.key"),
            kubeconfig: state.join("kubeconfig"),
            state,
        }
    }

    /// One API call: status and parsed body (Null when not JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        content_type: &str,
    ) -> (u16, Value) {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "30", "-X", method, "--cacert"])
            .arg(&self.ca)
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", self.token))
            .args(["-w", "\n%{http_code}"]);
        if let Some(b) = body {
            c.arg("-H")
                .arg(format!("Content-Type: {content_type}"))
                .arg("--data-binary")
                .arg(b.to_string());
        }
        let out = c.arg(format!("{}{path}", self.server)).output().unwrap();
        assert!(
            out.status.success(),
            "curl {method} {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }

    fn ok(&self, method: &str, path: &str, body: Option<&Value>, ct: &str) -> Value {
        let (code, v) = self.call(method, path, body, ct);
        assert!(
            (200..300).contains(&code),
            "{method} {path}: HTTP {code}: {v}"
        );
        v
    }

    pub fn get(&self, path: &str) -> Value {
        self.ok("GET", path, None, "")
    }

    pub fn post(&self, path: &str, body: &Value) -> Value {
        self.ok("POST", path, Some(body), "application/json")
    }

    /// POST that may find the object there already (409 is fine).
    pub fn ensure(&self, path: &str, body: &Value) {
        let (code, v) = self.call("POST", path, Some(body), "application/json");
        assert!(
            (200..300).contains(&code) || code == 409,
            "POST {path}: HTTP {code}: {v}"
        );
    }

    pub fn merge_patch(&self, path: &str, body: &Value) -> Value {
        self.ok("PATCH", path, Some(body), "application/merge-patch+json")
    }

    pub fn delete(&self, path: &str) {
        let (code, v) = self.call("DELETE", path, None, "");
        assert!(
            (200..300).contains(&code) || code == 404,
            "DELETE {path}: HTTP {code}: {v}"
        );
    }

    /// A namespace with `labels`, and its `default` service account.
    pub fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        self.ensure(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels}}),
        );
        self.ensure(
            &format!("/api/v1/namespaces/{name}/serviceaccounts"),
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
        );
    }

    /// A Node of `arch` without a kubelet, Ready and schedulable: created with the
    /// kubelet's labels and `extra`, its status patched Ready with capacity, and the
    /// not-ready taint that admission adds at creation removed.
    pub fn create_node(&self, name: &str, arch: &str, extra: &[(&str, &str)]) {
        let mut labels = serde_json::Map::new();
        labels.insert("kubernetes.io/arch".into(), json!(arch));
        labels.insert("kubernetes.io/os".into(), json!("linux"));
        labels.insert("kubernetes.io/hostname".into(), json!(name));
        for (k, v) in extra {
            labels.insert(k.to_string(), json!(v));
        }
        self.ensure(
            "/api/v1/nodes",
            &json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "labels": labels}}),
        );
        let now = chrono_now();
        let capacity = json!({"cpu": "16", "memory": "64Gi", "pods": "250"});
        self.merge_patch(
            &format!("/api/v1/nodes/{name}/status"),
            &json!({"status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "archctl test node", "lastHeartbeatTime": now,
                                "lastTransitionTime": now}],
                "capacity": capacity, "allocatable": capacity,
                "nodeInfo": {"architecture": arch, "operatingSystem": "linux",
                             "kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2",
                             "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                             "osImage": "", "containerRuntimeVersion": ""}}}),
        );
        self.merge_patch(
            &format!("/api/v1/nodes/{name}"),
            &json!({"spec": {"taints": []}}),
        );
    }

    /// The node a pod was bound to, once the scheduler bound it (None after `secs`).
    pub fn wait_bound(&self, ns: &str, pod: &str, secs: u64) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let p = self.get(&format!("/api/v1/namespaces/{ns}/pods/{pod}"));
            if let Some(n) = p["spec"]["nodeName"].as_str() {
                return Some(n.to_string());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Now, as RFC 3339 UTC (`date -u`, to need no time crate).
fn chrono_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs openssl in `dir`; panics with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server certificate for 127.0.0.1 in `dir` (`tls.crt`, `tls.key`), signed by the CA
/// `ca_crt`/`ca_key`.
pub fn server_certificate(dir: &Path, ca_crt: &Path, ca_key: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "tls.key",
            "-out",
            "tls.csr",
            "-subj",
            "/CN=archctl-webhook",
        ],
    );
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            ca_crt.to_str().unwrap(),
            "-CAkey",
            ca_key.to_str().unwrap(),
            "-CAcreateserial",
            "-CAserial",
            "ca.srl",
            "-out",
            "tls.crt",
            "-days",
            "1",
            "-extfile",
            "ext",
        ],
    );
}

/// A CA of its own in `dir` (`ca.crt`, `ca.key`) and a server certificate it signed.
pub fn ca_and_server_certificate(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=archctl-test-ca",
        ],
    );
    server_certificate(dir, &dir.join("ca.crt"), &dir.join("ca.key"));
}

impl ControlPlane {
    /// Registers the webhook at `https://ADDR/mutate` (replacing a configuration of the
    /// same name) the way deploy/kubernetes/ does, but by URL with the control plane's
    /// CA as caBundle: Pod CREATE, failurePolicy Ignore, the opt-out namespaceSelector.
    pub fn register_webhook(&self, name: &str, addr: &str) {
        use base64::Engine;
        let ca = std::fs::read(&self.ca).unwrap();
        self.delete(&format!(
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}"
        ));
        self.post(
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
            &json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": name},
                "webhooks": [{
                    "name": format!("{name}.archctl.io"),
                    "clientConfig": {
                        "url": format!("https://{addr}/mutate"),
                        "caBundle": base64::engine::general_purpose::STANDARD.encode(ca),
                    },
                    "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                               "resources": ["pods"], "scope": "Namespaced"}],
                    "failurePolicy": "Ignore",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 5,
                    "namespaceSelector": {"matchExpressions": [
                        {"key": "archctl.io/placement", "operator": "NotIn", "values": ["disabled"]}]},
                }]
            }),
        );
    }

    /// Starts `archctl webhook serve` (the binary `archctl`) on `addr` with the
    /// certificate in `dir` (see [`server_certificate`]), this control plane's
    /// kubeconfig and a cache in `dir`; its log in `dir/webhook.log`. Returns once it
    /// serves.
    pub fn spawn_webhook(&self, archctl: &str, dir: &Path, addr: &str) -> std::process::Child {
        let log = dir.join("webhook.log");
        let child = Command::new(archctl)
            .args(["webhook", "serve", "--listen", addr, "--tls-cert"])
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env("ARCHCTL_CACHE_DIR", dir.join("cache"))
            .env_remove("POD_NAMESPACE")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("serving https://")
        {
            assert!(
                Instant::now() < deadline,
                "webhook did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// Creates a pod of `images` (never run: no kubelet; `extra_spec` merged into its
    /// spec) and returns it as admitted.
    pub fn create_pod(&self, ns: &str, name: &str, images: &[&str], extra_spec: Value) -> Value {
        let containers: Vec<Value> = images
            .iter()
            .enumerate()
            .map(|(i, im)| json!({"name": format!("c{i}"), "image": im}))
            .collect();
        let mut spec = json!({"containers": containers, "automountServiceAccountToken": false});
        if let Value::Object(m) = extra_spec {
            for (k, v) in m {
                spec[k] = v;
            }
        }
        self.post(
            &format!("/api/v1/namespaces/{ns}/pods"),
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}),
        )
    }

    /// Until the API server calls a newly registered webhook (its informer must see the
    /// configuration first): probe pods in `ns` until one comes back annotated.
    pub fn wait_webhook_called(&self, ns: &str, image: &str) {
        self.create_namespace(ns, &[]);
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0.. {
            let p = self.create_pod(ns, &format!("probe-{i}"), &[image], json!({}));
            if p["metadata"]["annotations"]["archctl.io/placement"].is_string() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the API server never called the webhook"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}
