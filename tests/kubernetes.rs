//! The placement webhook (`archctl webhook serve`) against a real Kubernetes control
//! plane (tests/kubernetes/control-plane.sh: etcd, kube-apiserver, controller-manager
//! and scheduler v1.20 on 127.0.0.1), registered by URL with its caBundle, with images
//! from a real docker-registry: where the scheduler binds each pod, what the webhook
//! wrote, and what it never touches. Three nodes without kubelets: amd64, arm64, and
//! arm64 whose agent label says it emulates amd64.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    collections::BTreeSet,
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use base64::Engine;
use serde_json::{Value, json};
use support::{
    ARCHCTL,
    kube::ControlPlane,
    registry::{ImageSpec, Pushed, Registry, RegistryAuth, free_port, push_image},
};

const AMD64: &str = "place-amd64";
const ARM64: &str = "place-arm64";
const ARM64_EMU: &str = "place-arm64-emu";
const POOL: (&str, &str) = ("archctl-test/pool", "placement");
const PLACEMENT: &str = "archctl.io/placement";

struct Cluster {
    cp: &'static ControlPlane,
    public: Registry,
    private: Registry,
    arm64_only: Pushed,
    amd64_only: Pushed,
    multi: Pushed,
    secret_image: Pushed,
    webhook: String,
    webhook_log: std::path::PathBuf,
    _webhook: Child,
    _tmp: tempfile::TempDir,
}

/// Stops `pid` when this test process is gone (statics are never dropped).
// The watcher outlives this process by design: it is never waited for.
#[allow(clippy::zombie_processes)]
fn reap_with_me(pid: u32) {
    Command::new("setsid")
        .args([
            "sh",
            "-c",
            "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; kill \"$2\" 2>/dev/null",
            "reaper",
            &std::process::id().to_string(),
            &pid.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
}

fn ref_of(reg: &Registry, p: &Pushed) -> String {
    format!("{}/{}:{}", reg.addr(), p.repo, p.tag)
}

impl Cluster {
    fn get() -> &'static Cluster {
        static C: OnceLock<Cluster> = OnceLock::new();
        C.get_or_init(Cluster::start)
    }

    fn start() -> Cluster {
        let cp = support::kube::shared();
        let tmp = tempfile::tempdir().unwrap();
        let public = Registry::start(RegistryAuth::None);
        let private = Registry::start(RegistryAuth::Htpasswd {
            user: "puller",
            password: "pull-s3cret",
        });
        let arm64_only = push_image(
            &public,
            "place/arm64-only",
            "v1",
            ImageSpec::oci_index(&["linux/arm64"]),
        );
        let amd64_only = push_image(
            &public,
            "place/amd64-only",
            "v1",
            ImageSpec::oci("linux/amd64"),
        );
        let multi = push_image(
            &public,
            "place/multi",
            "v1",
            ImageSpec::oci_index(&["linux/amd64", "linux/arm64"]).with_attestations(),
        );
        let secret_image = push_image(
            &private,
            "place/private",
            "v1",
            ImageSpec::oci_index(&["linux/arm64"]),
        );

        // The webhook's certificate, signed by the control plane's CA.
        let d = tmp.path();
        support::kube::server_certificate(d, &cp.ca, &cp.ca_key);
        let port = free_port();
        let webhook = format!("127.0.0.1:{port}");
        let log = d.join("webhook.log");
        let child = cp.spawn_webhook(ARCHCTL, d, &webhook);
        reap_with_me(child.id());
        cp.register_webhook("archctl-placement", &webhook);
        cp.create_node(AMD64, "amd64", &[POOL]);
        cp.create_node(ARM64, "arm64", &[POOL]);
        cp.create_node(
            ARM64_EMU,
            "arm64",
            &[POOL, ("emulation.archctl.io/linux-amd64", "qemu")],
        );
        let c = Cluster {
            cp,
            public,
            private,
            arm64_only,
            amd64_only,
            multi,
            secret_image,
            webhook,
            webhook_log: log,
            _webhook: child,
            _tmp: tmp,
        };
        c.cp.wait_webhook_called("place-probe", &ref_of(&c.public, &c.multi));
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.webhook_log).unwrap_or_default()
    }

    fn create_pod(&self, ns: &str, name: &str, images: &[&str], extra_spec: Value) -> Value {
        self.cp.create_pod(ns, name, images, extra_spec)
    }

    fn bound(&self, ns: &str, pod: &str) -> String {
        self.cp.wait_bound(ns, pod, 60).unwrap_or_else(|| {
            let p = self.cp.get(&format!("/api/v1/namespaces/{ns}/pods/{pod}"));
            panic!(
                "{ns}/{pod} was never bound: {}\nwebhook log:\n{}",
                p["status"],
                self.log()
            )
        })
    }

    /// Waits until the scheduler has said the pod fits no node.
    fn unschedulable(&self, ns: &str, pod: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let p = self.cp.get(&format!("/api/v1/namespaces/{ns}/pods/{pod}"));
            assert!(
                p["spec"]["nodeName"].is_null(),
                "{ns}/{pod} was bound to {}",
                p["spec"]["nodeName"]
            );
            if let Some(c) = p["status"]["conditions"].as_array().and_then(|cs| {
                cs.iter()
                    .find(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
            }) {
                return c["message"].as_str().unwrap_or_default().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "{ns}/{pod}: the scheduler never gave up: {}",
                p["status"]
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn annotation(p: &Value, key: &str) -> Option<String> {
    p["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_string)
}

fn not_on(nodes: &[&str]) -> Value {
    json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": nodes}]}]}}}})
}

#[test]
fn arm64_only_image_goes_to_the_arm64_nodes() {
    let _ = require_kube!();
    let c = Cluster::get();
    c.cp.create_namespace("place-arm64", &[]);
    let image = ref_of(&c.public, &c.arm64_only);
    let p = c.create_pod("place-arm64", "app", &[&image], json!({}));
    assert_eq!(
        annotation(&p, PLACEMENT).as_deref(),
        Some("placed: arm64 (native or emulated); prefers native arm64"),
        "{}",
        p["metadata"]
    );
    let digests: Value =
        serde_json::from_str(&annotation(&p, "archctl.io/placement-images").unwrap()).unwrap();
    assert_eq!(digests[&image], c.arm64_only.digest);
    let node = c.bound("place-arm64", "app");
    assert!(node == ARM64 || node == ARM64_EMU, "bound to {node}");
    // With both arm64 nodes excluded by the pod's own affinity, nothing fits: the
    // webhook ANDed its terms with the pod's instead of widening them.
    c.create_pod(
        "place-arm64",
        "no-room",
        &[&image],
        not_on(&[ARM64, ARM64_EMU]),
    );
    let why = c.unschedulable("place-arm64", "no-room");
    assert!(why.contains("node(s)"), "{why}");
}

#[test]
fn amd64_only_image_goes_to_amd64_or_the_emulating_arm64_node() {
    let _ = require_kube!();
    let c = Cluster::get();
    c.cp.create_namespace("place-amd64", &[]);
    let image = ref_of(&c.public, &c.amd64_only);
    let p = c.create_pod("place-amd64", "app", &[&image], json!({}));
    assert!(
        annotation(&p, PLACEMENT)
            .unwrap()
            .starts_with("placed: amd64"),
        "{}",
        p["metadata"]
    );
    let node = c.bound("place-amd64", "app");
    assert!(node == AMD64 || node == ARM64_EMU, "bound to {node}");
    // Without the amd64 node, only the node that emulates amd64 fits — never the
    // plain arm64 one.
    c.create_pod("place-amd64", "emulated", &[&image], not_on(&[AMD64]));
    assert_eq!(c.bound("place-amd64", "emulated"), ARM64_EMU);
    c.create_pod(
        "place-amd64",
        "no-room",
        &[&image],
        not_on(&[AMD64, ARM64_EMU]),
    );
    c.unschedulable("place-amd64", "no-room");
}

#[test]
fn multi_arch_image_may_go_anywhere_and_init_containers_count() {
    let _ = require_kube!();
    let c = Cluster::get();
    c.cp.create_namespace("place-multi", &[]);
    let multi = ref_of(&c.public, &c.multi);
    let p = c.create_pod("place-multi", "app", &[&multi], json!({}));
    assert!(
        annotation(&p, PLACEMENT)
            .unwrap()
            .starts_with("placed: amd64, arm64"),
        "{}",
        p["metadata"]
    );
    let node = c.bound("place-multi", "app");
    assert!([AMD64, ARM64, ARM64_EMU].contains(&node.as_str()), "{node}");
    // An arm64-only init container narrows the multi-arch pod to arm64.
    let init =
        json!({"initContainers": [{"name": "init", "image": ref_of(&c.public, &c.arm64_only)}]});
    let p = c.create_pod("place-multi", "with-init", &[&multi], init);
    assert!(
        annotation(&p, PLACEMENT)
            .unwrap()
            .starts_with("placed: arm64 "),
        "{}",
        p["metadata"]
    );
    let node = c.bound("place-multi", "with-init");
    assert!(node == ARM64 || node == ARM64_EMU, "{node}");
}

#[test]
fn daemonset_pods_are_untouched_and_run_on_every_node() {
    let _ = require_kube!();
    let c = Cluster::get();
    c.cp.create_namespace("place-ds", &[]);
    let image = ref_of(&c.public, &c.amd64_only);
    c.cp.post(
        "/apis/apps/v1/namespaces/place-ds/daemonsets",
        &json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                "spec": {"selector": {"matchLabels": {"app": "agent"}},
                         "template": {"metadata": {"labels": {"app": "agent"}},
                                      "spec": {"nodeSelector": {POOL.0: POOL.1},
                                               "automountServiceAccountToken": false,
                                               "containers": [{"name": "a", "image": image}]}}}}),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pods = c.cp.get("/api/v1/namespaces/place-ds/pods");
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let nodes: BTreeSet<String> = items
            .iter()
            .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
            .collect();
        if items.len() == 3 && nodes.len() == 3 {
            for p in &items {
                assert!(
                    annotation(p, PLACEMENT).is_none(),
                    "a DaemonSet pod was touched: {}",
                    p["metadata"]
                );
            }
            assert!(nodes.contains(ARM64), "{nodes:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "DaemonSet pods not on the 3 nodes: {nodes:?} of {} pods\n{}",
            items.len(),
            c.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        c.log().contains("untouched: owned by a DaemonSet"),
        "{}",
        c.log()
    );
}

#[test]
fn an_unreachable_registry_admits_the_pod_with_the_reason() {
    let _ = require_kube!();
    let c = Cluster::get();
    c.cp.create_namespace("place-down", &[]);
    let p = c.create_pod(
        "place-down",
        "app",
        &["127.0.0.1:1/nothing/here:v1"],
        json!({}),
    );
    let a = annotation(&p, PLACEMENT).unwrap();
    assert!(
        a.starts_with("skipped: 127.0.0.1:1/nothing/here:v1: "),
        "{a}"
    );
    assert!(p["spec"]["affinity"].is_null(), "{}", p["spec"]);
    c.bound("place-down", "app");
}

#[test]
fn a_private_image_is_inspected_with_the_pods_pull_secret() {
    let _ = require_kube!();
    let c = Cluster::get();
    c.cp.create_namespace("place-private", &[]);
    let image = ref_of(&c.private, &c.secret_image);
    // Without the secret the registry refuses: admitted, skipped.
    let p = c.create_pod("place-private", "no-secret", &[&image], json!({}));
    let a = annotation(&p, PLACEMENT).unwrap();
    assert!(
        a.starts_with("skipped: ") && a.contains("unauthorized"),
        "{a}"
    );
    let auth = base64::engine::general_purpose::STANDARD.encode("puller:pull-s3cret");
    let config = json!({"auths": {c.private.addr(): {"auth": auth}}}).to_string();
    c.cp.post(
        "/api/v1/namespaces/place-private/secrets",
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pull"},
                "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)}}),
    );
    let p = c.create_pod(
        "place-private",
        "with-secret",
        &[&image],
        json!({"imagePullSecrets": [{"name": "pull"}]}),
    );
    assert!(
        annotation(&p, PLACEMENT)
            .unwrap()
            .starts_with("placed: arm64"),
        "{}\n{}",
        p["metadata"],
        c.log()
    );
    let digests: Value =
        serde_json::from_str(&annotation(&p, "archctl.io/placement-images").unwrap()).unwrap();
    assert_eq!(digests[&image], c.secret_image.digest);
    let node = c.bound("place-private", "with-secret");
    assert!(node == ARM64 || node == ARM64_EMU, "{node}");
    // The secret's credentials are not cached for pods without it.
    let p = c.create_pod("place-private", "no-secret-again", &[&image], json!({}));
    assert!(
        annotation(&p, PLACEMENT).unwrap().contains("unauthorized"),
        "{}",
        p["metadata"]
    );
}

#[test]
fn never_touched_opted_out_kube_system_and_chosen_architectures() {
    let _ = require_kube!();
    let c = Cluster::get();
    let image = ref_of(&c.public, &c.amd64_only);
    c.cp.create_namespace("place-optout", &[("archctl.io/placement", "disabled")]);
    let p = c.create_pod("place-optout", "app", &[&image], json!({}));
    assert!(
        p["metadata"]["annotations"].is_null() && p["spec"]["affinity"].is_null(),
        "{}",
        p
    );
    c.cp.delete("/api/v1/namespaces/kube-system/pods/place-sys");
    let p = c.create_pod("kube-system", "place-sys", &[&image], json!({}));
    assert!(annotation(&p, PLACEMENT).is_none(), "{}", p["metadata"]);
    c.cp.create_namespace("place-chosen", &[]);
    let p = c.create_pod(
        "place-chosen",
        "app",
        &[&image],
        json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}}),
    );
    assert!(
        annotation(&p, PLACEMENT).is_none() && p["spec"]["affinity"].is_null(),
        "{}",
        p
    );
    // It asked for arm64 with an amd64-only image: the user's choice stands.
    assert!(c.bound("place-chosen", "app").starts_with("place-arm64"));
    let log = c.log();
    assert!(
        log.contains("kube-system/place-sys: untouched: namespace kube-system"),
        "{log}"
    );
    assert!(
        log.contains("place-chosen/app: untouched: it constrains the architecture already"),
        "{log}"
    );
    assert!(
        !log.contains("place-optout/"),
        "the API server called the webhook for an opted-out namespace:\n{log}"
    );
}

#[test]
fn metrics_count_what_was_decided() {
    let _ = require_kube!();
    let c = Cluster::get();
    c.cp.create_namespace("place-metrics", &[]);
    c.create_pod(
        "place-metrics",
        "a",
        &[&ref_of(&c.public, &c.multi)],
        json!({}),
    );
    c.create_pod("place-metrics", "b", &["127.0.0.1:1/down:v1"], json!({}));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&c.cp.ca)
        .arg(format!("https://{}/metrics", c.webhook))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
    };
    assert!(
        value("archctl_webhook_decisions_total{decision=\"placed\"}") >= 1,
        "{text}"
    );
    assert!(
        value("archctl_webhook_skips_total{reason=\"registry\"}") >= 1,
        "{text}"
    );
    assert!(
        value("archctl_webhook_admission_duration_seconds_count") >= 2,
        "{text}"
    );
    assert!(
        value("archctl_webhook_images_inspected_total") >= 2,
        "{text}"
    );
}

/// YAML (yaml-rust2, already archctl's) as JSON, for the API server.
fn yaml_to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    (
                        k.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| format!("{k:?}")),
                        yaml_to_json(v),
                    )
                })
                .collect(),
        ),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::String(s) => json!(s),
        Yaml::Integer(i) => json!(i),
        Yaml::Real(r) => json!(r.parse::<f64>().unwrap()),
        Yaml::Boolean(b) => json!(b),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML {other:?}"),
    }
}

fn api_path(kind: &str, namespace: Option<&str>) -> String {
    let ns = |n: Option<&str>| {
        format!(
            "namespaces/{}/",
            n.expect("a namespaced object names its namespace")
        )
    };
    match kind {
        "Namespace" => "/api/v1/namespaces".into(),
        "ServiceAccount" => format!("/api/v1/{}serviceaccounts", ns(namespace)),
        "ConfigMap" => format!("/api/v1/{}configmaps", ns(namespace)),
        "Service" => format!("/api/v1/{}services", ns(namespace)),
        "Secret" => format!("/api/v1/{}secrets", ns(namespace)),
        "DaemonSet" => format!("/apis/apps/v1/{}daemonsets", ns(namespace)),
        "Deployment" => format!("/apis/apps/v1/{}deployments", ns(namespace)),
        "ClusterRole" => "/apis/rbac.authorization.k8s.io/v1/clusterroles".into(),
        "ClusterRoleBinding" => "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".into(),
        "MutatingWebhookConfiguration" => {
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations".into()
        }
        other => panic!("deploy/kubernetes has a {other}: add its API path here"),
    }
}

#[test]
fn the_shipped_manifests_are_valid_least_privilege_and_fail_open() {
    let _ = require_kube!();
    let c = Cluster::get();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let generated = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(dir.join("webhook-cert.sh"))
        .arg(generated.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(['4', '5'])
                || p.file_name().unwrap() == "40-webhook.yaml"
        })
        .collect();
    files.push(generated.path().join("45-webhook-tls.yaml"));
    files.push(generated.path().join("50-mutatingwebhook.yaml"));
    files.sort_by_key(|p| p.file_name().unwrap().to_owned());
    let mut kinds = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for doc in yaml_rust2::YamlLoader::load_from_str(&text).unwrap() {
            let obj = yaml_to_json(&doc);
            let kind = obj["kind"].as_str().unwrap().to_string();
            let ns = obj["metadata"]["namespace"].as_str();
            let path = api_path(&kind, ns);
            // The namespace for real (so the rest can be checked in it); everything
            // else validated by the API server without being stored.
            if kind == "Namespace" {
                c.cp.ensure(&path, &obj);
            } else {
                let (code, v) = c.cp.call(
                    "POST",
                    &format!("{path}?dryRun=All"),
                    Some(&obj),
                    "application/json",
                );
                assert!(
                    (200..300).contains(&code) || code == 409,
                    "{} {kind} {}: HTTP {code}: {v}",
                    f.display(),
                    obj["metadata"]["name"]
                );
            }
            match kind.as_str() {
                "ClusterRole" => {
                    for r in obj["rules"].as_array().unwrap() {
                        let verbs: Vec<&str> = r["verbs"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|v| v.as_str().unwrap())
                            .collect();
                        assert!(
                            verbs.iter().all(|v| ["get", "patch"].contains(v)),
                            "{}: more than get/patch: {verbs:?}",
                            obj["metadata"]["name"]
                        );
                        let res: Vec<&str> = r["resources"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|v| v.as_str().unwrap())
                            .collect();
                        if verbs.contains(&"patch") {
                            assert_eq!(res, ["nodes"], "only Nodes are patched");
                        }
                    }
                }
                "MutatingWebhookConfiguration" => {
                    let w = &obj["webhooks"][0];
                    assert_eq!(w["failurePolicy"], "Ignore");
                    assert_eq!(w["sideEffects"], "None");
                    assert!(w["clientConfig"]["caBundle"].as_str().unwrap().len() > 100);
                }
                "DaemonSet" | "Deployment" => {
                    // archctl itself accepts the arguments the manifests give it.
                    let container = &obj["spec"]["template"]["spec"]["containers"][0];
                    let mut argv = vec!["archctl".to_string()];
                    argv.extend(
                        container["args"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|a| a.as_str().unwrap().to_string()),
                    );
                    let parsed =
                        archctl::cli::Cli::parse_args(argv.iter().map(std::ffi::OsString::from));
                    assert!(
                        parsed.is_ok(),
                        "{argv:?}: {}",
                        parsed.err().map(|e| e.to_string()).unwrap_or_default()
                    );
                }
                _ => {}
            }
            kinds.push(kind);
        }
    }
    for k in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
        "Deployment",
        "Service",
        "Secret",
        "MutatingWebhookConfiguration",
    ] {
        assert!(
            kinds.iter().any(|x| x == k),
            "no {k} in deploy/kubernetes: {kinds:?}"
        );
    }
}
