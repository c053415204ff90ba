//! The API client: from `--kubeconfig FILE`, else inferred as kube-rs does (in-cluster
//! service account, then `KUBECONFIG`, then `~/.kube/config`).

use std::{path::Path, time::Duration};

use kube::config::{Config, KubeConfigOptions, Kubeconfig};

use super::KubeError;

/// How long one API request may take (connect, then read), so a hung API server never
/// hangs the agent or the webhook.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for `kubeconfig` (its current context), or the inferred configuration.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<kube::Client, KubeError> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| KubeError::Kubeconfig {
                path: path.display().to_string(),
                why: e.to_string(),
            })?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| KubeError::Kubeconfig {
                    path: path.display().to_string(),
                    why: e.to_string(),
                })?
        }
        None => Config::infer()
            .await
            .map_err(|e| KubeError::NoConfig(e.to_string()))?,
    };
    config.connect_timeout = Some(API_TIMEOUT);
    config.read_timeout = Some(API_TIMEOUT);
    config.write_timeout = Some(API_TIMEOUT);
    kube::Client::try_from(config).map_err(KubeError::from)
}
