//! The boot service that re-applies the configuration at every boot (`archctl boot`):
//! a systemd unit, an OpenRC init script, or a line in rc.local (sysv, busybox,
//! boot2docker). `--root` writes into another root (image building, tests);
//! `uninstall` removes exactly what `install` wrote.

use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("unknown init system \"{0}\": use auto, systemd, openrc or sysv")]
    UnknownInit(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} exists and was not written by archctl")]
    Foreign { path: PathBuf },
}

impl ServiceError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ServiceError::Foreign { .. } => {
                Some("move it away, or choose another init system with --init".into())
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    Systemd,
    Openrc,
    Sysv,
}

impl Init {
    pub fn as_str(&self) -> &'static str {
        match self {
            Init::Systemd => "systemd",
            Init::Openrc => "openrc",
            Init::Sysv => "sysv",
        }
    }

    pub fn parse(s: &str, root: &Path) -> Result<Init, ServiceError> {
        match s {
            "auto" => Ok(Init::detect(root)),
            "systemd" => Ok(Init::Systemd),
            "openrc" => Ok(Init::Openrc),
            "sysv" | "busybox" => Ok(Init::Sysv),
            other => Err(ServiceError::UnknownInit(other.to_string())),
        }
    }

    /// The init system of a root: a running or installed systemd, else OpenRC, else
    /// sysv-style rc.local.
    pub fn detect(root: &Path) -> Init {
        let has = |p: &str| root.join(p).exists();
        if has("run/systemd/system") || has("usr/lib/systemd/systemd") || has("lib/systemd/systemd")
        {
            Init::Systemd
        } else if has("sbin/openrc-run") || has("sbin/openrc") || has("usr/sbin/openrc") {
            Init::Openrc
        } else {
            Init::Sysv
        }
    }
}

/// Marks every file and line archctl writes, so uninstall touches nothing else.
pub const MARKER: &str = "written by archctl service install";

const UNIT: &str = "etc/systemd/system/archctl.service";
const UNIT_WANTS: &str = "etc/systemd/system/multi-user.target.wants/archctl.service";
const OPENRC: &str = "etc/init.d/archctl";
const OPENRC_LINK: &str = "etc/runlevels/default/archctl";

/// The systemd unit. After systemd-binfmt (which flushes every entry when it starts)
/// and the binfmt_misc mount, before the container engines.
pub fn systemd_unit(binary: &Path) -> String {
    format!(
        "# {MARKER}
[Unit]
Description=Register foreign-architecture emulators in binfmt_misc (archctl boot)
Documentation=https://github.com/archctl/archctl
After=proc-sys-fs-binfmt_misc.mount proc-sys-fs-binfmt_misc.automount systemd-binfmt.service local-fs.target
Before=docker.service containerd.service podman.service
ConditionPathIsDirectory=/proc/sys/fs

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={} boot

[Install]
WantedBy=multi-user.target
",
        binary.display()
    )
}

/// The OpenRC init script.
pub fn openrc_script(binary: &Path) -> String {
    format!(
        "#!/sbin/openrc-run
# {MARKER}
description=\"Register foreign-architecture emulators in binfmt_misc (archctl boot)\"

depend() {{
\tneed localmount
\tbefore docker containerd
}}

start() {{
\tebegin \"Registering emulators\"
\t{} boot
\teend $?
}}
",
        binary.display()
    )
}

/// The rc.local line.
pub fn rc_line(binary: &Path) -> String {
    format!("{} boot || true  # {MARKER}", binary.display())
}

/// First lines of an rc.local that install created (uninstall then removes the file).
const RC_HEADER: &str = "#!/bin/sh\n# rc.local created by archctl service install";

/// The boot line install adds (not the header).
fn is_our_line(l: &str) -> bool {
    l.contains(MARKER) && !l.starts_with("# rc.local created")
}

/// rc.local-style files, in order of preference.
const RC_FILES: &[&str] = &["etc/rc.local", "var/lib/boot2docker/bootlocal.sh"];

fn rc_file(root: &Path) -> PathBuf {
    RC_FILES
        .iter()
        .map(|f| root.join(f))
        .find(|p| p.exists())
        .unwrap_or_else(|| root.join(RC_FILES[0]))
}

/// What install did or would do, and what is there now.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    pub init: Init,
    pub root: String,
    /// Files and links written (install) or removed (uninstall), or present (status).
    pub paths: Vec<String>,
    pub installed: bool,
    /// The installed files are what this archctl would write.
    pub up_to_date: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServiceError + '_ {
    move |source| ServiceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where install records what it created (so uninstall removes exactly that).
const STATE: &str = "var/lib/archctl/service-install.json";

/// Create `dir` and missing parents, noting the ones this call created.
fn create_dirs(dir: &Path, created: &mut Vec<PathBuf>) -> Result<(), ServiceError> {
    let mut missing = Vec::new();
    let mut d = Some(dir);
    while let Some(x) = d {
        if x.exists() {
            break;
        }
        missing.push(x.to_path_buf());
        d = x.parent();
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    created.extend(missing.into_iter().rev());
    Ok(())
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct State {
    /// Directories install created, outermost first.
    dirs: Vec<PathBuf>,
}

fn save_state(root: &Path, mut dirs: Vec<PathBuf>) -> Result<(), ServiceError> {
    let path = root.join(STATE);
    if let Ok(old) = std::fs::read(&path)
        && let Ok(old) = serde_json::from_slice::<State>(&old)
    {
        let mut all = old.dirs;
        for d in dirs {
            if !all.contains(&d) {
                all.push(d);
            }
        }
        dirs = all;
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut created = Vec::new();
    create_dirs(dir, &mut created)?;
    dirs.extend(created);
    let json = serde_json::to_vec_pretty(&State { dirs }).unwrap_or_default();
    std::fs::write(&path, json).map_err(io(&path))
}

/// Remove the state file and every directory install created that is now empty.
fn drop_state(root: &Path) {
    let path = root.join(STATE);
    let state: State = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    for d in state.dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}

fn write_file(
    path: &Path,
    text: &str,
    mode: u32,
    created: &mut Vec<PathBuf>,
) -> Result<(), ServiceError> {
    if let Ok(existing) = std::fs::read_to_string(path)
        && !existing.contains(MARKER)
    {
        return Err(ServiceError::Foreign {
            path: path.to_path_buf(),
        });
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    create_dirs(dir, created)?;
    write_atomic(path, text.as_bytes(), mode)
}

/// [`crate::fsutil::write_atomic`], its error naming the directory or the file as before.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ServiceError> {
    crate::fsutil::write_atomic(path, bytes, mode).map_err(|e| io(&e.path)(e.source))
}

fn link(target: &str, at: &Path, created: &mut Vec<PathBuf>) -> Result<(), ServiceError> {
    let dir = at.parent().unwrap_or(Path::new("/"));
    create_dirs(dir, created)?;
    if std::fs::read_link(at).is_ok_and(|t| t == Path::new(target)) {
        return Ok(());
    }
    let _ = std::fs::remove_file(at);
    std::os::unix::fs::symlink(target, at).map_err(io(at))
}

/// Write and enable the boot service.
pub fn install(init: Init, root: &Path, binary: &Path) -> Result<ServiceReport, ServiceError> {
    let mut paths = Vec::new();
    let mut dirs = Vec::new();
    match init {
        Init::Systemd => {
            let unit = root.join(UNIT);
            write_file(&unit, &systemd_unit(binary), 0o644, &mut dirs)?;
            // What `systemctl enable` does; works offline and in another root.
            link(&format!("/{UNIT}"), &root.join(UNIT_WANTS), &mut dirs)?;
            paths.extend([unit, root.join(UNIT_WANTS)]);
            if root == Path::new("/") && Path::new("/run/systemd/system").exists() {
                let _ = std::process::Command::new("systemctl")
                    .arg("daemon-reload")
                    .status();
            }
        }
        Init::Openrc => {
            let script = root.join(OPENRC);
            write_file(&script, &openrc_script(binary), 0o755, &mut dirs)?;
            link(&format!("/{OPENRC}"), &root.join(OPENRC_LINK), &mut dirs)?;
            paths.extend([script, root.join(OPENRC_LINK)]);
        }
        Init::Sysv => {
            let file = rc_file(root);
            let line = rc_line(binary);
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let kept: Vec<&str> = text.lines().filter(|l| !is_our_line(l)).collect();
            let mut out = Vec::new();
            if kept.is_empty() {
                out.push(RC_HEADER.to_string());
            }
            // Before a final `exit 0`, where rc.local scripts end.
            let exit_at = kept.iter().rposition(|l| l.trim() == "exit 0");
            for (i, l) in kept.iter().enumerate() {
                if Some(i) == exit_at {
                    out.push(line.clone());
                }
                out.push(l.to_string());
            }
            if exit_at.is_none() {
                out.push(line);
            }
            let mut new_text = out.join("\n");
            new_text.push('\n');
            let dir = file.parent().unwrap_or(Path::new("/"));
            create_dirs(dir, &mut dirs)?;
            let mode = std::fs::metadata(&file)
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
                .unwrap_or(0o755);
            write_atomic(&file, new_text.as_bytes(), mode | 0o700)?;
            paths.push(file);
        }
    }
    save_state(root, dirs)?;
    Ok(ServiceReport {
        init,
        root: root.display().to_string(),
        paths: paths.iter().map(|p| p.display().to_string()).collect(),
        installed: true,
        up_to_date: true,
    })
}

/// Remove exactly what `install` wrote.
pub fn uninstall(init: Init, root: &Path) -> Result<ServiceReport, ServiceError> {
    let mut removed = Vec::new();
    let mut remove_marked = |p: PathBuf, is_link: bool| -> Result<(), ServiceError> {
        let ours = if is_link {
            std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink())
        } else {
            std::fs::read_to_string(&p).is_ok_and(|t| t.contains(MARKER))
        };
        if ours {
            std::fs::remove_file(&p).map_err(io(&p))?;
            removed.push(p.display().to_string());
        }
        Ok(())
    };
    match init {
        Init::Systemd => {
            remove_marked(root.join(UNIT_WANTS), true)?;
            remove_marked(root.join(UNIT), false)?;
        }
        Init::Openrc => {
            remove_marked(root.join(OPENRC_LINK), true)?;
            remove_marked(root.join(OPENRC), false)?;
        }
        Init::Sysv => {
            let file = rc_file(root);
            if let Ok(text) = std::fs::read_to_string(&file) {
                let created = text.starts_with(RC_HEADER);
                let kept: Vec<&str> = text.lines().filter(|l| !is_our_line(l)).collect();
                let header_lines = RC_HEADER.lines().count();
                if created && kept.len() <= header_lines {
                    std::fs::remove_file(&file).map_err(io(&file))?;
                } else if kept.len() != text.lines().count() {
                    let mut t = kept.join("\n");
                    t.push('\n');
                    std::fs::write(&file, t).map_err(io(&file))?;
                }
                if kept.len() != text.lines().count() {
                    removed.push(file.display().to_string());
                }
            }
        }
    }
    drop_state(root);
    Ok(ServiceReport {
        init,
        root: root.display().to_string(),
        paths: removed,
        installed: false,
        up_to_date: true,
    })
}

/// Is the service installed, and is it what this archctl would write?
pub fn status(init: Init, root: &Path, binary: &Path) -> ServiceReport {
    let (paths, expected): (Vec<PathBuf>, Option<(PathBuf, String)>) = match init {
        Init::Systemd => (
            vec![root.join(UNIT), root.join(UNIT_WANTS)],
            Some((root.join(UNIT), systemd_unit(binary))),
        ),
        Init::Openrc => (
            vec![root.join(OPENRC), root.join(OPENRC_LINK)],
            Some((root.join(OPENRC), openrc_script(binary))),
        ),
        Init::Sysv => (vec![rc_file(root)], None),
    };
    let present: Vec<String> = paths
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .map(|p| p.display().to_string())
        .collect();
    let installed = match init {
        Init::Sysv => {
            std::fs::read_to_string(rc_file(root)).is_ok_and(|t| t.lines().any(is_our_line))
        }
        _ => present.len() == paths.len(),
    };
    let up_to_date = match (&expected, init) {
        (Some((p, text)), _) => std::fs::read_to_string(p).is_ok_and(|t| t == *text),
        (None, _) => std::fs::read_to_string(rc_file(root))
            .is_ok_and(|t| t.lines().any(|l| l == rc_line(binary))),
    };
    ServiceReport {
        init,
        root: root.display().to_string(),
        paths: present,
        installed,
        up_to_date: installed && up_to_date,
    }
}
