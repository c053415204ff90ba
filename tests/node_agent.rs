//! `archctl node-agent` against a real API server (tests/kubernetes/control-plane.sh),
//! each agent in a private binfmt_misc instance: labels, readiness, repair of a lost
//! entry (SIGHUP and the interval), labels removed on SIGTERM, `--remove-on-exit`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    collections::BTreeMap,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use support::{
    ARCHCTL, Sandbox,
    kube::ControlPlane,
    registry::{free_port, http_request},
};

/// The host's other architecture: the one the agent emulates here.
const FOREIGN: &str = if cfg!(target_arch = "aarch64") {
    "x86_64"
} else {
    "aarch64"
};
const FOREIGN_GO: &str = if cfg!(target_arch = "aarch64") {
    "amd64"
} else {
    "arm64"
};
const NATIVE_GO: &str = if cfg!(target_arch = "aarch64") {
    "arm64"
} else {
    "amd64"
};

/// A running agent: its process (inside the sandbox), its log, its health address.
struct Agent {
    child: Child,
    log: std::path::PathBuf,
    health: String,
}

impl Agent {
    fn start(sb: &Sandbox, cp: &ControlPlane, node: &str, config: &str, extra: &[&str]) -> Agent {
        let cfg = sb.tmp.path().join(format!("{node}.toml"));
        std::fs::write(&cfg, config).unwrap();
        let log = sb.tmp.path().join(format!("{node}.log"));
        let port = free_port();
        let health = format!("127.0.0.1:{port}");
        let child = sb
            .command(ARCHCTL)
            .env("ARCHCTL_RUNTIME_DIR", sb.runtime_dir())
            .arg("--binfmt-dir")
            .arg(&sb.dir)
            .arg("--config")
            .arg(&cfg)
            .args([
                "--json",
                "node-agent",
                "--node-name",
                node,
                "--listen",
                &health,
            ])
            .arg("--kubeconfig")
            .arg(&cp.kubeconfig)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent { child, log, health }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_request("GET", &format!("http://{}{path}", self.health), &[], &[])
            .ok()
            .map(|r| (r.status, r.text()))
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// SIGTERM, then its exit status and JSON report.
    fn stop(mut self) -> (i32, serde_json::Value, String) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut out = String::new();
                std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut out)
                    .unwrap();
                let v = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
                return (status.code().unwrap_or(-1), v, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "node-agent did not stop within 60 s of SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn archctl_labels(cp: &ControlPlane, node: &str) -> BTreeMap<String, String> {
    let n = cp.get(&format!("/api/v1/nodes/{node}"));
    n["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.contains("archctl.io/"))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `cond` every 100 ms for up to `secs`; panics with `what` and the agent's log.
fn wait_for(agent: &Agent, secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}; agent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ready(agent: &Agent) -> bool {
    agent.get("/readyz").is_some_and(|(s, _)| s == 200)
}

#[test]
fn labels_ready_repair_and_removal_on_sigterm() {
    require_sandbox!();
    let cp = require_kube!();
    let node = "agent-labels";
    cp.create_node(node, NATIVE_GO, &[]);
    let sb = Sandbox::new();
    let config = format!("[binfmt]\narchitectures = [\"{FOREIGN}\"]\n");
    let agent = Agent::start(&sb, cp, node, &config, &["--interval", "3600"]);
    wait_for(&agent, 60, "/readyz 200", || ready(&agent));
    let labels = archctl_labels(cp, node);
    assert_eq!(
        labels.get(&format!("emulation.archctl.io/linux-{FOREIGN_GO}")),
        Some(&"qemu".to_string()),
        "{labels:?}"
    );
    assert_eq!(
        labels.get(&format!("native.archctl.io/linux-{NATIVE_GO}")),
        Some(&"true".to_string()),
        "{labels:?}"
    );
    assert!(
        !labels.contains_key(&format!("emulation.archctl.io/linux-{NATIVE_GO}")),
        "the native architecture is never labelled emulated: {labels:?}"
    );
    assert_eq!(agent.get("/healthz").map(|r| r.0), Some(200));
    let entry = format!("qemu-{FOREIGN}");
    assert!(sb.entry(&entry).is_some(), "{entry} not registered");

    // An entry lost (as to a systemd-binfmt restart): SIGHUP checks at once (the
    // interval is an hour) and puts it back.
    let out = sb.sh(&format!("echo -1 > '{}/{entry}'", sb.dir.display()));
    assert!(out.status.success(), "{}", out.shown());
    assert!(sb.entry(&entry).is_none());
    agent.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for(&agent, 60, "the lost entry re-registered", || {
        sb.entry(&entry).is_some() && agent.log().contains("re-registered")
    });
    let log = agent.log();
    assert!(
        log.contains(&format!("re-registered {FOREIGN}")) && log.contains("SIGHUP"),
        "{log}"
    );

    let (code, report, log) = agent.stop();
    assert_eq!(code, 0, "{log}");
    assert_eq!(report["stopped_by"], "SIGTERM", "{report}");
    assert_eq!(report["repairs"], 1, "{report}");
    assert!(report["checks"].as_u64().unwrap() >= 2, "{report}");
    assert!(
        archctl_labels(cp, node).is_empty(),
        "labels left after SIGTERM: {:?}",
        archctl_labels(cp, node)
    );
    // Handlers stay without --remove-on-exit.
    assert!(sb.entry(&entry).is_some(), "{entry} removed at exit");
    // Other labels are the node's own.
    let n = cp.get(&format!("/api/v1/nodes/{node}"));
    assert_eq!(n["metadata"]["labels"]["kubernetes.io/arch"], NATIVE_GO);
}

#[test]
fn repairs_on_the_interval_and_removes_entries_with_remove_on_exit() {
    require_sandbox!();
    let cp = require_kube!();
    let node = "agent-interval";
    cp.create_node(node, NATIVE_GO, &[]);
    let sb = Sandbox::new();
    let config = format!("[binfmt]\narchitectures = [\"{FOREIGN}\"]\n");
    let agent = Agent::start(
        &sb,
        cp,
        node,
        &config,
        &["--interval", "1", "--remove-on-exit"],
    );
    wait_for(&agent, 60, "/readyz 200", || ready(&agent));
    let entry = format!("qemu-{FOREIGN}");
    let out = sb.sh(&format!("echo -1 > '{}/{entry}'", sb.dir.display()));
    assert!(out.status.success(), "{}", out.shown());
    wait_for(&agent, 60, "the interval's check to re-register", || {
        sb.entry(&entry).is_some() && agent.log().contains("re-registered")
    });
    let (code, report, log) = agent.stop();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        report["entries_removed"],
        serde_json::json!([entry]),
        "{report}"
    );
    assert!(
        sb.entry(&entry).is_none(),
        "{entry} left with --remove-on-exit"
    );
    assert!(archctl_labels(cp, node).is_empty());
}

#[test]
fn not_ready_while_an_entry_is_unproven_and_no_label_for_it() {
    require_sandbox!();
    let cp = require_kube!();
    let node = "agent-unready";
    cp.create_node(node, NATIVE_GO, &[]);
    let sb = Sandbox::new();
    // The configured architecture has no emulator at the named path.
    let config = format!(
        "[binfmt]\narchitectures = [\"{FOREIGN}\"]\n[emulators]\n{FOREIGN} = \"/nonexistent/qemu-{FOREIGN}\"\n"
    );
    let agent = Agent::start(&sb, cp, node, &config, &["--interval", "3600"]);
    wait_for(&agent, 60, "the first check's native label", || {
        archctl_labels(cp, node).contains_key(&format!("native.archctl.io/linux-{NATIVE_GO}"))
    });
    let (status, body) = agent.get("/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(FOREIGN), "{body}");
    assert_eq!(agent.get("/healthz").map(|r| r.0), Some(200));
    assert!(
        !archctl_labels(cp, node).contains_key(&format!("emulation.archctl.io/linux-{FOREIGN_GO}")),
        "an unproven entry must not be labelled: {:?}",
        archctl_labels(cp, node)
    );
    let (code, _, log) = agent.stop();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn a_node_that_does_not_exist_is_a_clear_error() {
    require_sandbox!();
    let cp = require_kube!();
    let sb = Sandbox::new();
    let out = support::RunExt::run(
        sb.command(ARCHCTL)
            .arg("--binfmt-dir")
            .arg(&sb.dir)
            .args(["node-agent", "--node-name", "no-such-node", "--kubeconfig"])
            .arg(&cp.kubeconfig),
    );
    support::assert_code(&out, 1);
    support::assert_error_line(&out, "node no-such-node does not exist");
    assert!(
        sb.entries().is_empty(),
        "nothing registered for a missing node"
    );
}
