//! `archctl node-agent`: a long-running process for a privileged DaemonSet. Each check
//! applies the configuration (`boot`), proves every served entry with its test program
//! ([`Observation`]), and labels the Node; checks run at
//! start, every `--interval`, and on SIGHUP. `/healthz` says the loop is alive,
//! `/readyz` that every configured entry is proven and the labels are on the Node. On
//! SIGTERM or SIGINT it removes its labels (and, with `--remove-on-exit`, archctl's
//! entries) and returns its report.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

use super::{CommandError, Context, binfmt};

mod observation;
use crate::{
    arch::Table,
    kubernetes::{
        KubeError, client,
        http::{self, Request, Response},
        labels::{self, label_patch},
    },
    plan::Selection,
    report::Report,
};
pub use observation::Observation;

/// What `archctl node-agent` is given.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub binfmt_dir: PathBuf,
    pub config: PathBuf,
    pub kubeconfig: Option<PathBuf>,
    pub node: String,
    pub interval: Duration,
    pub listen: String,
    pub remove_on_exit: bool,
    pub test_timeout: Duration,
}

/// `archctl node-agent`'s report, when it stops.
#[derive(Debug, Clone, Serialize)]
pub struct AgentReport {
    pub node: String,
    /// Checks run (the first at start).
    pub checks: u64,
    /// Entries re-registered after the first check (lost in between).
    pub repairs: u64,
    /// Labels taken off the Node at exit.
    pub labels_removed: Vec<String>,
    /// `--remove-on-exit`: entries removed at exit.
    pub entries_removed: Vec<String>,
    /// The signal that stopped it.
    pub stopped_by: String,
}

/// What the health endpoints answer from.
#[derive(Debug, Default)]
struct Health {
    last_check: Option<Instant>,
    ready: bool,
    why_not: Vec<String>,
}

/// The field manager named in the API server's managedFields.
const MANAGER: &str = "archctl-node-agent";

pub fn run(opts: &AgentOptions) -> Result<AgentReport, CommandError> {
    let runtime = crate::kubernetes::runtime()?;
    runtime.block_on(agent(opts))
}

fn log(msg: impl AsRef<str>) {
    eprintln!(
        "archctl node-agent: {}",
        crate::report::terminal_safe(msg.as_ref())
    );
}

async fn agent(opts: &AgentOptions) -> Result<AgentReport, CommandError> {
    // Signals first: from here on SIGTERM ends the loop cleanly instead of the process.
    let sig = |k: SignalKind| {
        signal(k).map_err(|e| KubeError::Runtime(format!("installing a signal handler: {e}")))
    };
    let (mut term, mut int, mut hup) = (
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
        sig(SignalKind::hangup())?,
    );
    let client = client::connect(opts.kubeconfig.as_deref()).await?;
    let nodes: Api<Node> = Api::all(client);
    node_labels(&nodes, &opts.node).await?;

    let health = Arc::new(Mutex::new(Health::default()));
    let listener = http::bind(&opts.listen).await?;
    if let Ok(a) = listener.local_addr() {
        log(format!("node {}: health on http://{a}", opts.node));
    }
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(http::serve(
        listener,
        None,
        64 * 1024,
        health_handler(health.clone(), opts.interval),
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        },
    ));

    let mut report = AgentReport {
        node: opts.node.clone(),
        checks: 0,
        repairs: 0,
        labels_removed: Vec::new(),
        entries_removed: Vec::new(),
        stopped_by: String::new(),
    };
    let mut managed: Vec<String> = Vec::new();
    loop {
        let first = report.checks == 0;
        let observed = check(opts).await;
        report.checks += 1;
        let (ready, why_not) = match observed {
            Ok(o) => {
                if first {
                    log(format!(
                        "node {}: native {}; proven {}",
                        opts.node,
                        list(&o.native),
                        list(&o.proven.keys().cloned().collect::<Vec<_>>())
                    ));
                } else if !o.repaired.is_empty() {
                    report.repairs += o.repaired.len() as u64;
                    log(format!(
                        "node {}: re-registered {} (entries lost since the last check)",
                        opts.node,
                        o.repaired.join(", ")
                    ));
                }
                for (arch, why) in &o.unproven {
                    log(format!("node {}: {arch} not proven: {why}", opts.node));
                }
                managed = o.proven.keys().cloned().collect();
                let mut why_not: Vec<String> = o
                    .unproven
                    .iter()
                    .map(|(a, w)| format!("{a}: {w}"))
                    .collect();
                if let Err(e) = apply_labels(&nodes, &opts.node, &o.labels(Table::builtin())).await
                {
                    log(format!("node {}: labels not applied: {e}", opts.node));
                    why_not.push(format!("labels not applied: {e}"));
                }
                (why_not.is_empty(), why_not)
            }
            Err(e) if first => {
                let _ = stop_tx.send(true);
                let _ = server.await;
                return Err(e);
            }
            Err(e) => {
                log(format!("node {}: check failed: {e}", opts.node));
                (false, vec![format!("check failed: {e}")])
            }
        };
        if let Ok(mut h) = health.lock() {
            h.last_check = Some(Instant::now());
            h.ready = ready;
            h.why_not = why_not;
        }
        tokio::select! {
            _ = tokio::time::sleep(opts.interval) => {}
            _ = hup.recv() => log(format!("node {}: SIGHUP: checking now", opts.node)),
            _ = term.recv() => { report.stopped_by = "SIGTERM".into(); break }
            _ = int.recv() => { report.stopped_by = "SIGINT".into(); break }
        }
    }

    if let Ok(mut h) = health.lock() {
        h.ready = false;
        h.why_not = vec!["stopping".into()];
    }
    match remove_labels(&nodes, &opts.node).await {
        Ok(removed) => {
            log(format!(
                "node {}: {}: removed labels {}",
                opts.node,
                report.stopped_by,
                list(&removed)
            ));
            report.labels_removed = removed;
        }
        Err(e) => log(format!("node {}: labels not removed: {e}", opts.node)),
    }
    if opts.remove_on_exit && !managed.is_empty() {
        let dir = opts.binfmt_dir.clone();
        let archs = managed.clone();
        let removed = tokio::task::spawn_blocking(move || {
            binfmt::disable(&Context::new(dir), &Selection::Archs(archs), false)
        })
        .await
        .map_err(|e| KubeError::Runtime(e.to_string()))?;
        match removed {
            Ok(r) => {
                report.entries_removed = r
                    .entries
                    .iter()
                    .filter(|e| e.action == crate::plan::Action::Removed)
                    .map(|e| e.name.clone())
                    .collect();
                log(format!(
                    "node {}: removed entries {}",
                    opts.node,
                    list(&report.entries_removed)
                ));
            }
            Err(e) => log(format!("node {}: entries not removed: {e}", opts.node)),
        }
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    Ok(report)
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// One check, on tokio's blocking pool (registration and test programs are blocking).
async fn check(opts: &AgentOptions) -> Result<Observation, CommandError> {
    let (dir, config, timeout) = (
        opts.binfmt_dir.clone(),
        opts.config.clone(),
        opts.test_timeout,
    );
    tokio::task::spawn_blocking(move || {
        let ctx = Context::new(dir);
        let boot = match binfmt::boot(&ctx, &config) {
            Ok(r) => r,
            Err(CommandError::Failed(r)) => match *r {
                Report::Boot(b) => b,
                other => return Err(CommandError::Failed(Box::new(other))),
            },
            Err(e) => return Err(e),
        };
        let served: Vec<String> = boot
            .result
            .entries
            .iter()
            .filter(|e| {
                use crate::plan::Action::*;
                matches!(e.action, Registered | Replaced | Enabled | Unchanged)
            })
            .map(|e| e.arch.clone())
            .collect();
        let test = if served.is_empty() {
            None
        } else {
            match binfmt::test(&ctx, &served, timeout) {
                Ok(t) => Some(t),
                Err(CommandError::Failed(r)) => match *r {
                    Report::Test(t) => Some(t),
                    other => return Err(CommandError::Failed(Box::new(other))),
                },
                Err(e) => return Err(e),
            }
        };
        let mut o = Observation::from_reports(&boot, test.as_ref());
        // What the host runs natively, whatever the configuration selects.
        for a in ctx.native_all().arches {
            if !o.native.contains(&a) {
                o.native.push(a);
            }
        }
        Ok(o)
    })
    .await
    .map_err(|e| CommandError::from(KubeError::Runtime(e.to_string())))?
}

async fn node_labels(nodes: &Api<Node>, node: &str) -> Result<BTreeMap<String, String>, KubeError> {
    match nodes.get(node).await {
        Ok(n) => Ok(n.metadata.labels.unwrap_or_default()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(KubeError::Api(format!(
            "node {node} does not exist (name it with --node-name, or NODE_NAME from the downward API)"
        ))),
        Err(e) => Err(e.into()),
    }
}

async fn apply_labels(
    nodes: &Api<Node>,
    node: &str,
    desired: &BTreeMap<String, String>,
) -> Result<(), KubeError> {
    let current = node_labels(nodes, node).await?;
    if let Some(patch) = label_patch(&current, desired) {
        nodes
            .patch(node, &patch_params(), &Patch::Merge(&patch))
            .await?;
        let changed: Vec<String> = patch["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| match v.as_str() {
                        Some(v) => format!("{k}={v}"),
                        None => format!("-{k}"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        log(format!("node {node}: labels {}", changed.join(" ")));
    }
    Ok(())
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// Takes every archctl label off the Node; returns their keys.
async fn remove_labels(nodes: &Api<Node>, node: &str) -> Result<Vec<String>, KubeError> {
    let current = node_labels(nodes, node).await?;
    let removed: Vec<String> = current
        .keys()
        .filter(|k| labels::is_ours(k))
        .cloned()
        .collect();
    if let Some(patch) = label_patch(&current, &BTreeMap::new()) {
        nodes
            .patch(node, &patch_params(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(removed)
}

/// `/healthz`: a check finished within three intervals (or two minutes), i.e. the loop
/// is not stuck. `/readyz`: the last check proved every configured entry and labelled
/// the Node.
fn health_handler(health: Arc<Mutex<Health>>, interval: Duration) -> http::Handler {
    let started = Instant::now();
    let stale = (interval * 3).max(Duration::from_secs(120));
    Arc::new(move |req: Request| {
        let health = health.clone();
        Box::pin(async move {
            let Ok(h) = health.lock() else {
                return Response::text(500, "poisoned\n");
            };
            match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/healthz") => {
                    let since = h.last_check.unwrap_or(started).elapsed();
                    if since <= stale {
                        Response::text(200, "ok\n")
                    } else {
                        Response::text(
                            503,
                            format!("no check finished for {} s\n", since.as_secs()),
                        )
                    }
                }
                ("GET", "/readyz") if h.ready => Response::text(200, "ready\n"),
                ("GET", "/readyz") => {
                    let why = if h.last_check.is_none() {
                        "the first check has not finished".to_string()
                    } else {
                        h.why_not.join("; ")
                    };
                    Response::text(503, format!("not ready: {why}\n"))
                }
                _ => Response::text(404, "not found: /healthz, /readyz\n"),
            }
        })
    })
}
