//! archctl on Kubernetes (issue #14): the node agent (`commands::node_agent`) labels its
//! Node with what the node runs natively and by emulation, and the placement webhook
//! turns what a pod's images offer into node affinity over those labels. [`labels`] is
//! the one place the label scheme lives (and the label patch); [`client`] builds the API
//! client; [`http`] is the small HTTP(S) server both serve from (health, metrics,
//! admission).
//!
//! Client crates: kube 5 with k8s-openapi 0.29 (feature `v1_33`, the oldest that
//! k8s-openapi 0.29 generates). Only APIs stable since Kubernetes 1.16 are used — core/v1
//! Node, Pod, Secret and Namespace, admission.k8s.io/v1 AdmissionReview — whose wire
//! format has not changed since, so the same build talks to the 1.20 API server of the
//! tests and to current clusters; fields newer than the server are `Option`s that are
//! never sent. Labels are written by JSON merge patch of `metadata.labels` alone, so no
//! field the server does not know is ever sent.

pub mod client;
pub mod http;
pub mod labels;
pub mod placement;

/// Errors of the Kubernetes side.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubeconfig {path}: {why}")]
    Kubeconfig { path: String, why: String },
    #[error("no API server to talk to: {0}")]
    NoConfig(String),
    #[error("Kubernetes API: {0}")]
    Api(String),
    #[error("listen on {addr}: {why}")]
    Listen { addr: String, why: String },
    #[error("TLS {what} {path}: {why}")]
    Tls {
        what: &'static str,
        path: String,
        why: String,
    },
    #[error("{0}")]
    Runtime(String),
}

impl KubeError {
    pub fn hint(&self) -> Option<String> {
        match self {
            KubeError::Kubeconfig { .. } => {
                Some("pass a readable kubeconfig with --kubeconfig FILE".into())
            }
            KubeError::NoConfig(_) => Some(
                "run in a pod with a service account, or pass --kubeconfig FILE (or set KUBECONFIG)"
                    .into(),
            ),
            KubeError::Listen { .. } => {
                Some("choose a free address with --listen ADDR:PORT".into())
            }
            KubeError::Tls { .. } => Some(
                "give a PEM certificate chain and its PEM private key (deploy/kubernetes/webhook-cert.sh makes both)"
                    .into(),
            ),
            _ => None,
        }
    }
}

impl From<kube::Error> for KubeError {
    fn from(e: kube::Error) -> Self {
        KubeError::Api(e.to_string())
    }
}

/// A multi-threaded-free runtime for the long-running commands: one thread, all I/O and
/// timers, plus tokio's blocking pool for registration work.
pub fn runtime() -> Result<tokio::runtime::Runtime, KubeError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KubeError::Runtime(format!("starting the async runtime: {e}")))
}
