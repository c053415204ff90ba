//! Benchmark: the admission latency the placement webhook adds, on a real API server
//! (tests/kubernetes/control-plane.sh; build it first), for 1, 10 and 100 pods, with
//! archctl's registry cache cold (images never inspected) and warm (the same images
//! again). Each pod is created with one API call (curl, sequentially) in a namespace the
//! webhook serves and, as the baseline in the same run, in one the
//! MutatingWebhookConfiguration's namespaceSelector excludes; the difference is what the
//! webhook adds (TLS from the API server, the AdmissionReview, inspection, the patch).
//! Also the webhook's own time per decision, from its log. Run with
//! `cargo bench --bench webhook` (`ARCHCTL=path` measures that build;
//! `ARCHCTL_K8S_BIN` as for the tests).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

#[path = "../tests/support/registry.rs"]
mod registry;

#[path = "../tests/support/kube.rs"]
mod kube;

use std::time::{Duration, Instant};

use serde_json::json;

fn archctl_bin() -> String {
    std::env::var("ARCHCTL").unwrap_or_else(|_| env!("CARGO_BIN_EXE_archctl").to_string())
}

/// Creates `images.len()` pods in `ns`, one API call each; returns the total time.
fn create_pods(cp: &kube::ControlPlane, ns: &str, prefix: &str, images: &[String]) -> Duration {
    let t = Instant::now();
    for (i, image) in images.iter().enumerate() {
        cp.post(
            &format!("/api/v1/namespaces/{ns}/pods"),
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("{prefix}-{i}")},
                    "spec": {"automountServiceAccountToken": false,
                             "containers": [{"name": "c", "image": image}]}}),
        );
    }
    t.elapsed()
}

/// The webhook's own decision times (ms) logged since `from` lines.
fn decision_ms(log: &std::path::Path, from: usize) -> Vec<f64> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .skip(from)
        .filter(|l| l.contains("bench-on/"))
        .filter_map(|l| {
            l.rsplit_once('(')
                .and_then(|(_, t)| t.strip_suffix(" ms)"))
                .and_then(|t| t.parse().ok())
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if let Some(why) = kube::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let cp = kube::shared();
    let reg = registry::Registry::start(registry::RegistryAuth::None);
    // 1 + 10 + 100 distinct images (half single amd64 manifests, half amd64+arm64
    // indexes), so every cold round inspects images never seen.
    let pushed = registry::push_many(&reg, 111);
    let images: Vec<String> = pushed
        .iter()
        .map(|p| format!("{}/{}:{}", reg.addr(), p.repo, p.tag))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    kube::server_certificate(d, &cp.ca, &cp.ca_key);
    let addr = format!("127.0.0.1:{}", registry::free_port());
    let log = d.join("webhook.log");
    let mut webhook = cp.spawn_webhook(&archctl_bin(), d, &addr);
    cp.register_webhook("archctl-bench", &addr);
    cp.create_namespace("bench-on", &[]);
    cp.create_namespace("bench-off", &[("archctl.io/placement", "disabled")]);
    cp.wait_webhook_called("bench-probe", "127.0.0.1:1/x:v1");
    println!(
        "| pods | cache | with webhook | baseline (namespace not sent) | added per pod | webhook's own median |"
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: |");
    let mut start = 0;
    for n in [1usize, 10, 100] {
        let set = &images[start..start + n];
        start += n;
        for (cache, round) in [("cold", "c"), ("warm", "w")] {
            let lines = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .count();
            let base = create_pods(cp, "bench-off", &format!("{round}{n}"), set);
            let on = create_pods(cp, "bench-on", &format!("{round}{n}"), set);
            let own = median(decision_ms(&log, lines));
            let per = (on.as_secs_f64() - base.as_secs_f64()) * 1000.0 / n as f64;
            println!(
                "| {n} | {cache} | {:.1} ms | {:.1} ms | {per:.2} ms | {own:.2} ms |",
                on.as_secs_f64() * 1000.0,
                base.as_secs_f64() * 1000.0
            );
        }
    }
    let _ = webhook.kill();
    let _ = webhook.wait();
}
