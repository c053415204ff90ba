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
            let err = |why: String| KubeError::Kubeconfig {
                path: path.display().to_string(),
                why,
            };
            let text = read_bounded(path).map_err(err)?;
            let kc = Kubeconfig::from_yaml(&text).map_err(|e| err(first_line(&e.to_string())))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| err(first_line(&e.to_string())))?
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

/// Largest kubeconfig read (real ones are a few KiB; certificates inline make tens).
const MAX_KUBECONFIG_BYTES: u64 = 4 * 1024 * 1024;

fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut text = String::new();
    f.take(MAX_KUBECONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_KUBECONFIG_BYTES {
        return Err(format!("larger than {MAX_KUBECONFIG_BYTES} bytes"));
    }
    Ok(text)
}

/// The first line of a message (YAML errors draw the offending line below it).
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).trim_end().to_string()
}
