//! `archctl webhook serve`: the mutating admission webhook for Pods (AdmissionReview
//! v1), over TLS. Per request: the scope check and the decision are
//! [`crate::kubernetes::placement`]'s; this module reads what they need (the namespace's
//! labels, the pod's pull secrets, what every image offers, within the request's time
//! budget), answers with the JSON Patch, counts, and serves /healthz, /readyz and
//! /metrics. It never denies: whatever goes wrong, the pod is admitted (unchanged, or
//! with `archctl.io/placement: skipped: <reason>`).

use std::{
    collections::{BTreeSet, HashMap},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::Api;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};

use super::CommandError;
use crate::{
    kubernetes::{
        KubeError, client,
        http::{self, Request, Response},
        placement::{self, Decision, ImageFacts, OPT_OUT_LABEL, OPT_OUT_VALUE},
    },
    registry::{self, credentials::CredentialStore, inspect::Inspector},
};

/// Largest AdmissionReview accepted (a Pod is at most ~1.5 MiB in etcd).
pub const MAX_REVIEW_BYTES: usize = 8 * 1024 * 1024;
/// How long a namespace's opt-out label is trusted before it is read again.
const NAMESPACE_TTL: Duration = Duration::from_secs(10);

/// What `archctl webhook serve` is given.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    pub listen: String,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub kubeconfig: Option<PathBuf>,
    /// Serve without an API client: no namespace labels (nothing is opted out by
    /// label), no pull secrets (pods that name some are skipped).
    pub no_api: bool,
    pub budget: Duration,
    pub preferred_weight: u8,
    pub namespace: String,
    pub registry: registry::Options,
}

/// `archctl webhook serve`'s report, when it stops.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookReport {
    pub requests: u64,
    pub placed: u64,
    pub skipped: u64,
    pub untouched: u64,
    pub bad_requests: u64,
    pub stopped_by: String,
}

/// Why a pod was skipped, as a metric label.
#[derive(Debug, Clone, Copy)]
enum SkipReason {
    Registry,
    Timeout,
    NoCommonArch,
    Secret,
    Other,
}

impl SkipReason {
    const ALL: [SkipReason; 5] = [
        SkipReason::Registry,
        SkipReason::Timeout,
        SkipReason::NoCommonArch,
        SkipReason::Secret,
        SkipReason::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            SkipReason::Registry => "registry",
            SkipReason::Timeout => "timeout",
            SkipReason::NoCommonArch => "no-common-arch",
            SkipReason::Secret => "secret",
            SkipReason::Other => "other",
        }
    }
}

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0];

#[derive(Default)]
struct Metrics {
    placed: AtomicU64,
    skipped: AtomicU64,
    untouched: AtomicU64,
    bad: AtomicU64,
    skips: [AtomicU64; 5],
    images: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Metrics {
    fn record(&self, d: &Decision, skip: Option<SkipReason>, elapsed: Duration) {
        match d {
            Decision::Placed { .. } => &self.placed,
            Decision::Skipped(_) => &self.skipped,
            Decision::Untouched(_) => &self.untouched,
        }
        .fetch_add(1, Ordering::Relaxed);
        if let Some(r) = skip {
            self.skips[r as usize].fetch_add(1, Ordering::Relaxed);
        }
        let s = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition format 0.0.4.
    fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        s.push_str("# HELP archctl_webhook_decisions_total Pods admitted, by what was decided.\n");
        s.push_str("# TYPE archctl_webhook_decisions_total counter\n");
        for (k, a) in [
            ("placed", &self.placed),
            ("skipped", &self.skipped),
            ("untouched", &self.untouched),
        ] {
            s.push_str(&format!(
                "archctl_webhook_decisions_total{{decision=\"{k}\"}} {}\n",
                g(a)
            ));
        }
        s.push_str(
            "# HELP archctl_webhook_skips_total Pods admitted unchanged (fail open), by reason.\n",
        );
        s.push_str("# TYPE archctl_webhook_skips_total counter\n");
        for r in SkipReason::ALL {
            s.push_str(&format!(
                "archctl_webhook_skips_total{{reason=\"{}\"}} {}\n",
                r.label(),
                g(&self.skips[r as usize])
            ));
        }
        s.push_str("# HELP archctl_webhook_bad_requests_total Requests that were not an AdmissionReview.\n");
        s.push_str("# TYPE archctl_webhook_bad_requests_total counter\n");
        s.push_str(&format!(
            "archctl_webhook_bad_requests_total {}\n",
            g(&self.bad)
        ));
        s.push_str("# HELP archctl_webhook_images_inspected_total Image references inspected.\n");
        s.push_str("# TYPE archctl_webhook_images_inspected_total counter\n");
        s.push_str(&format!(
            "archctl_webhook_images_inspected_total {}\n",
            g(&self.images)
        ));
        s.push_str("# HELP archctl_webhook_admission_duration_seconds Time to decide one AdmissionReview.\n");
        s.push_str("# TYPE archctl_webhook_admission_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            s.push_str(&format!(
                "archctl_webhook_admission_duration_seconds_bucket{{le=\"{b}\"}} {}\n",
                g(&self.buckets[i])
            ));
        }
        s.push_str(&format!(
            "archctl_webhook_admission_duration_seconds_bucket{{le=\"+Inf\"}} {}\n",
            g(&self.count)
        ));
        s.push_str(&format!(
            "archctl_webhook_admission_duration_seconds_sum {}\n",
            g(&self.sum_micros) as f64 / 1e6
        ));
        s.push_str(&format!(
            "archctl_webhook_admission_duration_seconds_count {}\n",
            g(&self.count)
        ));
        s
    }
}

struct State {
    opts: WebhookOptions,
    client: Option<kube::Client>,
    /// The inspector of pods without pull secrets (the on-disk cache, no credentials).
    anonymous: Inspector,
    metrics: Metrics,
    namespaces: Mutex<HashMap<String, (Instant, bool)>>,
}

fn log(msg: impl AsRef<str>) {
    eprintln!(
        "archctl webhook: {}",
        crate::report::terminal_safe(msg.as_ref())
    );
}

pub fn serve(opts: WebhookOptions) -> Result<WebhookReport, CommandError> {
    let tls = http::tls_config(&opts.tls_cert, &opts.tls_key)?;
    let runtime = crate::kubernetes::runtime()?;
    runtime.block_on(run(opts, tls))
}

async fn run(
    opts: WebhookOptions,
    tls: Arc<rustls::ServerConfig>,
) -> Result<WebhookReport, CommandError> {
    let sig = |k: SignalKind| {
        signal(k).map_err(|e| KubeError::Runtime(format!("installing a signal handler: {e}")))
    };
    let (mut term, mut int) = (sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?);
    let client = if opts.no_api {
        None
    } else {
        Some(client::connect(opts.kubeconfig.as_deref()).await?)
    };
    // The anonymous inspector shares archctl's cache; credentials never come from the
    // machine's engines (only a pod's own pull secrets are used, without the cache).
    let anonymous = Inspector::with_credentials(opts.registry.clone(), CredentialStore::default())?;
    let listener = http::bind(&opts.listen).await?;
    if let Ok(a) = listener.local_addr() {
        log(format!(
            "serving https://{a}/mutate (budget {} ms, preferred weight {}, namespace {}{})",
            opts.budget.as_millis(),
            opts.preferred_weight,
            opts.namespace,
            if opts.no_api { ", no API" } else { "" }
        ));
    }
    let state = Arc::new(State {
        opts,
        client,
        anonymous,
        metrics: Metrics::default(),
        namespaces: Mutex::new(HashMap::new()),
    });
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let handler_state = state.clone();
    let handler: http::Handler = Arc::new(move |req: Request| {
        let state = handler_state.clone();
        Box::pin(async move { handle(&state, req).await })
    });
    let server = tokio::spawn(http::serve(
        listener,
        Some(tls),
        MAX_REVIEW_BYTES,
        handler,
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        },
    ));
    let stopped_by = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    let _ = stop_tx.send(true);
    let _ = server.await;
    let m = &state.metrics;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let report = WebhookReport {
        requests: g(&m.count) + g(&m.bad),
        placed: g(&m.placed),
        skipped: g(&m.skipped),
        untouched: g(&m.untouched),
        bad_requests: g(&m.bad),
        stopped_by: stopped_by.into(),
    };
    log(format!(
        "{stopped_by}: stopped after {} requests",
        report.requests
    ));
    Ok(report)
}

async fn handle(state: &State, req: Request) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/mutate") => mutate(state, &req.body).await,
        ("GET", "/healthz") | ("GET", "/readyz") => Response::text(200, "ok\n"),
        ("GET", "/metrics") => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: state.metrics.render().into_bytes(),
        },
        _ => Response::text(
            404,
            "not found: POST /mutate, GET /healthz, /readyz, /metrics\n",
        ),
    }
}

fn bad(state: &State, why: &str) -> Response {
    state.metrics.bad.fetch_add(1, Ordering::Relaxed);
    log(format!("bad request: {why}"));
    Response::text(400, format!("{why}\n"))
}

async fn mutate(state: &State, body: &[u8]) -> Response {
    let review: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return bad(state, &format!("the body is not JSON: {e}")),
    };
    let api_version = review["apiVersion"].as_str().unwrap_or_default();
    if review["kind"] != "AdmissionReview"
        || !matches!(
            api_version,
            "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
        )
    {
        return bad(
            state,
            "not an admission.k8s.io/v1 AdmissionReview (apiVersion, kind)",
        );
    }
    let req = &review["request"];
    let Some(uid) = req["uid"].as_str() else {
        return bad(state, "the AdmissionReview has no request.uid");
    };
    let start = Instant::now();
    let pod = &req["object"];
    let namespace = req["namespace"]
        .as_str()
        .or_else(|| pod["metadata"]["namespace"].as_str())
        .unwrap_or("default")
        .to_string();
    let name = pod["metadata"]["name"]
        .as_str()
        .or_else(|| pod["metadata"]["generateName"].as_str())
        .unwrap_or("?")
        .to_string();
    let (decision, skip) = if req["kind"]["kind"] != "Pod" || req["operation"] != "CREATE" {
        (Decision::Untouched("not a Pod CREATE".into()), None)
    } else {
        let budget = state.opts.budget;
        match tokio::time::timeout(budget, decide(state, pod, &namespace)).await {
            Ok(d) => d,
            Err(_) => (
                Decision::Skipped(format!(
                    "timed out after {} ms inspecting {}",
                    budget.as_millis(),
                    placement::images(pod).join(", ")
                )),
                Some(SkipReason::Timeout),
            ),
        }
    };
    let elapsed = start.elapsed();
    state.metrics.record(&decision, skip, elapsed);
    let what = match &decision {
        Decision::Untouched(why) => format!("untouched: {why}"),
        other => other
            .annotation(state.opts.preferred_weight)
            .unwrap_or_default(),
    };
    log(format!(
        "{namespace}/{name}: {what} ({:.1} ms)",
        elapsed.as_secs_f64() * 1000.0
    ));
    let mut response = json!({"uid": uid, "allowed": true});
    if let Some(p) = placement::patch(pod, &decision, state.opts.preferred_weight) {
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(p.to_string()));
    }
    let out = json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response});
    Response::json(200, out.to_string().into_bytes())
}

/// The decision for one pod (the caller bounds it with the budget).
async fn decide(state: &State, pod: &Value, namespace: &str) -> (Decision, Option<SkipReason>) {
    let opted_out = match namespace_opted_out(state, namespace).await {
        Ok(o) => o,
        Err(e) => {
            return (
                Decision::Untouched(format!("namespace {namespace} unreadable: {e}")),
                None,
            );
        }
    };
    if let Some(why) = placement::scope(pod, namespace, &state.opts.namespace, opted_out) {
        return (Decision::Untouched(why), None);
    }
    let images = placement::images(pod);
    let secrets = placement::pull_secrets(pod);
    let own;
    let inspector = if secrets.is_empty() {
        &state.anonymous
    } else {
        match pull_credentials(state, namespace, &secrets).await {
            Ok(store) => {
                let opts = registry::Options {
                    cache: false,
                    ..state.opts.registry.clone()
                };
                match Inspector::with_credentials(opts, store) {
                    Ok(i) => {
                        own = i;
                        &own
                    }
                    Err(e) => return (Decision::Skipped(e.to_string()), Some(SkipReason::Other)),
                }
            }
            Err(why) => return (Decision::Skipped(why), Some(SkipReason::Secret)),
        }
    };
    state
        .metrics
        .images
        .fetch_add(images.len() as u64, Ordering::Relaxed);
    let reports = futures_util::future::join_all(images.iter().map(|i| inspector.inspect(i))).await;
    let mut facts = Vec::new();
    for r in reports {
        if let Some(e) = &r.error {
            return (
                Decision::Skipped(format!("{}: {e}", r.reference)),
                Some(SkipReason::Registry),
            );
        }
        let archs: BTreeSet<String> = r
            .platforms
            .iter()
            .filter(|p| p.os == "linux" && p.architecture != "unknown")
            .map(|p| p.architecture.clone())
            .collect();
        facts.push(ImageFacts {
            image: r.reference.clone(),
            digest: r.digest.clone().unwrap_or_default(),
            archs,
        });
    }
    let d = placement::decide(pod, &facts);
    let skip = match &d {
        Decision::Skipped(w) if w.starts_with("no architecture") => Some(SkipReason::NoCommonArch),
        Decision::Skipped(_) => Some(SkipReason::Other),
        _ => None,
    };
    (d, skip)
}

/// Whether the namespace carries the opt-out label (read through the API, cached for
/// [`NAMESPACE_TTL`]; without an API client, no namespace is opted out by label).
async fn namespace_opted_out(state: &State, ns: &str) -> Result<bool, KubeError> {
    let Some(client) = &state.client else {
        return Ok(false);
    };
    if let Ok(cache) = state.namespaces.lock()
        && let Some((at, v)) = cache.get(ns)
        && at.elapsed() < NAMESPACE_TTL
    {
        return Ok(*v);
    }
    let api: Api<Namespace> = Api::all(client.clone());
    let n = api.get(ns).await?;
    let v = n
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(OPT_OUT_LABEL))
        .is_some_and(|v| v == OPT_OUT_VALUE);
    if let Ok(mut cache) = state.namespaces.lock() {
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(ns.to_string(), (Instant::now(), v));
    }
    Ok(v)
}

/// The credentials in the pod's pull secrets (`kubernetes.io/dockerconfigjson` or
/// `kubernetes.io/dockercfg`), read in its namespace. A secret that is missing is
/// skipped, as the kubelet does; none readable at all is a skip.
async fn pull_credentials(
    state: &State,
    ns: &str,
    names: &[String],
) -> Result<CredentialStore, String> {
    let Some(client) = &state.client else {
        return Err("the pod names pull secrets and the webhook runs with --no-api".into());
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut configs = Vec::new();
    let mut problems = Vec::new();
    for name in names {
        match api.get(name).await {
            Ok(s) => {
                let data = s.data.unwrap_or_default();
                match data
                    .get(".dockerconfigjson")
                    .or_else(|| data.get(".dockercfg"))
                {
                    Some(b) => configs.push(b.0.clone()),
                    None => problems.push(format!("secret {ns}/{name} has no .dockerconfigjson")),
                }
            }
            Err(e) => problems.push(format!("secret {ns}/{name}: {e}")),
        }
    }
    let (store, used) = CredentialStore::from_pull_secrets(&configs);
    if used == 0 {
        return Err(format!("no usable pull secret: {}", problems.join("; ")));
    }
    for p in problems {
        log(format!("{ns}: {p} (ignored)"));
    }
    Ok(store)
}
