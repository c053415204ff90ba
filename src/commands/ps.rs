//! `archctl ps`: the processes running under emulation, with their containers' names
//! from the engines that answer.

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use super::{CommandError, Context};
use crate::{
    ps::{self, ContainerEngine},
    report::PsReport,
};

/// How long an engine may take to name its containers.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(5);

/// Every process under an emulator of an enabled entry in `ctx`'s binfmt_misc.
pub fn ps(ctx: &Context) -> Result<PsReport, CommandError> {
    let mut notes = Vec::new();
    if !ctx.fs.is_mounted()? {
        notes.push(format!(
            "binfmt_misc is not mounted at {}: no entry, so no emulated process",
            ctx.fs.dir().display()
        ));
    }
    let entries = ctx.entries_if_mounted()?;
    let mut scan = ps::scan(Path::new("/proc"), &entries, ctx.table)?;
    name_containers(&mut scan.processes);
    if scan.unreadable > 0 {
        let why = if nix::unistd::geteuid().is_root() {
            "permission denied, e.g. in another user namespace"
        } else {
            "other users'; run as root to see them"
        };
        let n = scan.unreadable;
        let what = if n == 1 { "process" } else { "processes" };
        notes.push(format!(
            "{n} {what} could not be read ({why}): the list may miss some"
        ));
    }
    Ok(PsReport {
        processes: scan.processes,
        notes,
    })
}

/// Fill in container names: one `inspect` per engine for all its ids, a short timeout;
/// an engine that is missing or does not answer leaves the names null.
fn name_containers(processes: &mut [ps::Process]) {
    let mut ids: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for c in processes.iter().filter_map(|p| p.container.as_ref()) {
        let v = ids.entry(program(c.engine)).or_default();
        if !v.contains(&c.id) {
            v.push(c.id.clone());
        }
    }
    let names: BTreeMap<&str, BTreeMap<String, String>> = ids
        .into_iter()
        .map(|(program, ids)| (program, inspect_names(program, &ids)))
        .collect();
    for c in processes.iter_mut().filter_map(|p| p.container.as_mut()) {
        c.name = names
            .get(program(c.engine))
            .and_then(|n| n.get(&c.id))
            .cloned();
    }
}

/// The client that names an engine's containers.
fn program(engine: ContainerEngine) -> &'static str {
    match engine {
        ContainerEngine::Docker => crate::engine::Engine::Docker.program(),
        ContainerEngine::Podman => crate::engine::Engine::Podman.program(),
        ContainerEngine::Containerd => crate::engine::Engine::Nerdctl.program(),
    }
}

/// id → name, from `PROGRAM inspect --type container --format '{{.Id}} {{.Name}}' IDS`
/// (its output for the ids it knows, whatever its exit status for the others).
fn inspect_names(program: &str, ids: &[String]) -> BTreeMap<String, String> {
    let child = Command::new(program)
        .args([
            "inspect",
            "--type",
            "container",
            "--format",
            "{{.Id}} {{.Name}}",
            "--",
        ])
        .args(ids)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        return BTreeMap::new();
    };
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(ENGINE_TIMEOUT) {
        Ok(Ok(out)) => out,
        Ok(Err(_)) => return BTreeMap::new(),
        Err(_) => {
            // Our own child, by its id; the waiting thread then ends.
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return BTreeMap::new();
        }
    };
    parse_names(&String::from_utf8_lossy(&out.stdout))
}

/// `ID NAME` lines; docker's names start with `/`.
fn parse_names(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once(' '))
        .map(|(id, name)| (id.to_string(), name.trim_start_matches('/').to_string()))
        .filter(|(_, name)| !name.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_inspect_output() {
        let n = parse_names("abc /web\ndef db\n\nghi \n");
        assert_eq!(n.get("abc").map(String::as_str), Some("web"));
        assert_eq!(n.get("def").map(String::as_str), Some("db"));
        assert_eq!(n.len(), 2);
        // No such program: no names, no error.
        assert!(inspect_names("/nonexistent/docker", &["abc".into()]).is_empty());
    }
}
