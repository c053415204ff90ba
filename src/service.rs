//! The boot service that re-applies the configuration at every boot (`archctl boot`):
//! a systemd unit, an OpenRC init script, or a line in rc.local (sysv, busybox) or, in a
//! root whose os-release says `ID=boot2docker`, in `/var/lib/boot2docker/bootlocal.sh`
//! (boot2docker's only persistent boot hook; created when missing). The boot command
//! carries `--config PATH` when one was given, so a configuration off the default path
//! (boot2docker's lives on the persistent disk) is the one applied at boot. `--root` writes into another root (image building, tests), only
//! through [`crate::rootfs::Root`]: every path is resolved inside the root as chroot
//! would, so no link in it leads a read or a write out; `uninstall` removes exactly what
//! `install` wrote, found from the root-relative paths of its state file.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::rootfs::{Root, RootError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("unknown init system \"{0}\": use auto, systemd, openrc or sysv")]
    UnknownInit(String),
    #[error(transparent)]
    Root(#[from] RootError),
    #[error("{} exists and was not written by archctl", path.display())]
    Foreign { path: PathBuf },
    /// A path the boot command cannot carry (a newline), or a relative --config for
    /// another root.
    #[error("{what} {}: {why}", path.display())]
    BadPath {
        what: &'static str,
        path: PathBuf,
        why: &'static str,
    },
}

impl ServiceError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ServiceError::Foreign { .. } => {
                Some("move it away, or choose another init system with --init".into())
            }
            ServiceError::Root(e) => e.hint(),
            ServiceError::BadPath { what, .. } => Some(format!(
                "give {what} as an absolute path without newlines, as the booted system sees it"
            )),
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

    pub fn parse(s: &str, root: &Root) -> Result<Init, ServiceError> {
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
    pub fn detect(root: &Root) -> Init {
        let has = |p: &str| root.exists(Path::new(p));
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
/// Where a package (archctl's .deb) puts the unit, in the order systemd reads them
/// after /etc (on a merged-/usr system the two are one file).
const PACKAGED_UNITS: &[&str] = &[
    "usr/lib/systemd/system/archctl.service",
    "lib/systemd/system/archctl.service",
];
const OPENRC: &str = "etc/init.d/archctl";
const OPENRC_LINK: &str = "etc/runlevels/default/archctl";

/// What the boot service runs: `BINARY [--config PATH] boot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootCommand {
    /// The archctl binary, as the booted system sees it.
    pub binary: PathBuf,
    /// `--config PATH`, when the configuration is not at the default path.
    pub config: Option<PathBuf>,
}

impl BootCommand {
    /// The command for `binary` and the global `--config` as given. A relative config
    /// path is made absolute from the current directory when the service is for this
    /// system (it boots with another current directory), and refused for another root;
    /// a newline in either path is refused (no init file can carry it on one line).
    pub fn new(binary: &Path, config: Option<&Path>, root: &Root) -> Result<Self, ServiceError> {
        let bad = |what, path: &Path, why| ServiceError::BadPath {
            what,
            path: path.to_path_buf(),
            why,
        };
        let has_newline = |p: &Path| p.as_os_str().as_encoded_bytes().contains(&b'\n');
        if has_newline(binary) {
            return Err(bad("--binary", binary, "contains a newline"));
        }
        let config = match config {
            None => None,
            Some(c) if has_newline(c) => return Err(bad("--config", c, "contains a newline")),
            Some(c) if c.is_absolute() => Some(c.to_path_buf()),
            Some(c) if root.is_host_root() => Some(
                std::path::absolute(c)
                    .map_err(|_| bad("--config", c, "cannot be made absolute"))?,
            ),
            Some(c) => {
                return Err(bad(
                    "--config",
                    c,
                    "is relative, and names no file inside another --root",
                ));
            }
        };
        Ok(BootCommand {
            binary: binary.to_path_buf(),
            config,
        })
    }

    fn words(&self) -> Vec<&std::ffi::OsStr> {
        let mut w = vec![self.binary.as_os_str()];
        if let Some(c) = &self.config {
            w.push("--config".as_ref());
            w.push(c.as_os_str());
        }
        w.push("boot".as_ref());
        w
    }

    /// For a shell (rc.local, bootlocal.sh, OpenRC): each word quoted when it needs it.
    pub fn shell(&self) -> String {
        let words: Vec<String> = self.words().into_iter().map(shell_quote).collect();
        words.join(" ")
    }

    /// For systemd's ExecStart=: words with blanks or quotes double-quoted, `%` and `$`
    /// doubled (systemd expands specifiers and variables even inside quotes).
    pub fn systemd(&self) -> String {
        let words: Vec<String> = self.words().into_iter().map(systemd_quote).collect();
        words.join(" ")
    }
}

/// Characters that need no quoting, in a shell word or a systemd ExecStart= word.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_./:=@+,-".contains(c)
}

fn shell_quote(w: &std::ffi::OsStr) -> String {
    let w = w.to_string_lossy();
    if !w.is_empty() && w.chars().all(|c| is_plain(c) || c == '%') {
        return w.into_owned();
    }
    format!("'{}'", w.replace('\'', "'\\''"))
}

fn systemd_quote(w: &std::ffi::OsStr) -> String {
    let w = w.to_string_lossy();
    let escaped = w.replace('%', "%%").replace('$', "$$");
    if !w.is_empty() && w.chars().all(|c| is_plain(c) || c == '%' || c == '$') {
        return escaped;
    }
    format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The systemd unit. After systemd-binfmt (which flushes every entry when it starts)
/// and the binfmt_misc mount, before the container engines.
pub fn systemd_unit(cmd: &BootCommand) -> String {
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
ExecStart={}

[Install]
WantedBy=multi-user.target
",
        cmd.systemd()
    )
}

/// The OpenRC init script. `after localmount`, not `need`: Debian's openrc has no
/// localmount service (its LSB mountall.sh mounts), and OpenRC refuses to start a
/// script that needs a service that does not exist (found in the OpenRC guest).
pub fn openrc_script(cmd: &BootCommand) -> String {
    format!(
        "#!/sbin/openrc-run
# {MARKER}
description=\"Register foreign-architecture emulators in binfmt_misc (archctl boot)\"

depend() {{
\tafter localmount
\tbefore docker containerd
}}

start() {{
\tebegin \"Registering emulators\"
\t{}
\teend $?
}}
",
        cmd.shell()
    )
}

/// The rc.local (bootlocal.sh) line.
pub fn rc_line(cmd: &BootCommand) -> String {
    format!("{} || true  # {MARKER}", cmd.shell())
}

/// First lines of an rc.local (or bootlocal.sh) that install created (uninstall then
/// removes the file, when nothing else was added to it): `#!/bin/sh` and this comment.
fn rc_header(file: &Path) -> String {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    format!("#!/bin/sh\n# {name} created by archctl service install")
}

/// The boot line install adds (not the header).
fn is_our_line(l: &str) -> bool {
    l.contains(MARKER) && !l.ends_with(" created by archctl service install")
}

/// boot2docker's hook on its persistent disk, run at the end of every boot.
pub const BOOTLOCAL: &str = "var/lib/boot2docker/bootlocal.sh";

/// rc.local-style files, in order of preference.
const RC_FILES: &[&str] = &["etc/rc.local", BOOTLOCAL];

/// The most archctl reads of an os-release.
const OS_RELEASE_LIMIT: u64 = 64 << 10;

/// The root's os-release (`etc/os-release`, else `usr/lib/os-release`) says
/// `ID=boot2docker`.
pub fn is_boot2docker(root: &Root) -> bool {
    let text = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| root.read(Path::new(p), OS_RELEASE_LIMIT).ok().flatten());
    let Some((bytes, _)) = text else {
        return false;
    };
    String::from_utf8_lossy(&bytes).lines().any(|l| {
        l.trim()
            .strip_prefix("ID=")
            .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\''))
            == Some("boot2docker")
    })
}

/// The rc.local-style file of a root: boot2docker's bootlocal.sh (whether or not it
/// exists: boot2docker runs nothing else from its persistent disk, and its /etc is
/// tmpfs), else the first of [`RC_FILES`] that exists, else etc/rc.local.
fn rc_file(root: &Root) -> &'static Path {
    if is_boot2docker(root) {
        return Path::new(BOOTLOCAL);
    }
    let first = Path::new(RC_FILES[0]);
    RC_FILES
        .iter()
        .map(Path::new)
        .find(|p| root.exists(p))
        .unwrap_or(first)
}

/// The most archctl reads of a unit, script or rc.local.
const READ_LIMIT: u64 = 1 << 20;

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
    /// The boot command the service runs (install, status), e.g.
    /// `/usr/local/bin/archctl --config /var/lib/boot2docker/archctl/config.toml boot`;
    /// null for uninstall.
    pub command: Option<String>,
    /// The unit found is a package's (/usr/lib/systemd/system/archctl.service, the
    /// .deb's), enabled by the package manager; `uninstall` leaves it to the package.
    /// Only `status` sets it.
    pub packaged: bool,
}

/// Where install records what it created (so uninstall removes exactly that).
const STATE: &str = "var/lib/archctl/service-install.json";

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct State {
    /// Directories install created, outermost first, relative to the root (so a root
    /// moved or copied elsewhere is still uninstalled inside itself).
    dirs: Vec<PathBuf>,
    /// `dirs` are relative to the root. Older archctl wrote the root joined with them
    /// (and no such field): those under the root as given are read as relative to it,
    /// the others (the root has moved since) are left alone.
    #[serde(default)]
    root_relative: bool,
}

/// The text of `rel` in the root, None when it is missing.
fn read_text(root: &Root, rel: &Path) -> Result<Option<(String, u32)>, ServiceError> {
    Ok(root
        .read(rel, READ_LIMIT)?
        .map(|(b, mode)| (String::from_utf8_lossy(&b).into_owned(), mode)))
}

fn load_state(root: &Root) -> Vec<PathBuf> {
    let state: State = root
        .read(Path::new(STATE), READ_LIMIT)
        .ok()
        .flatten()
        .and_then(|(b, _)| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let relative = state.root_relative;
    // The root as given now, or as the kernel names it (it may have been given
    // differently then).
    let canonical = std::fs::canonicalize(root.path()).ok();
    let under_root = |d: &Path| {
        let given = d.strip_prefix(root.path()).ok();
        given
            .or_else(|| canonical.as_deref().and_then(|c| d.strip_prefix(c).ok()))
            .map(Path::to_path_buf)
    };
    state
        .dirs
        .into_iter()
        .filter_map(|d| {
            let rel = if relative { d } else { under_root(&d)? };
            // Nothing a hand-made state file names climbs out (Root would keep it in
            // anyway).
            crate::rootfs::is_plain_relative(&rel).then_some(rel)
        })
        .collect()
}

fn save_state(root: &Root, dirs: Vec<PathBuf>) -> Result<(), ServiceError> {
    let mut all = load_state(root);
    for d in dirs {
        if !all.contains(&d) {
            all.push(d);
        }
    }
    let path = Path::new(STATE);
    let created = root.create_dir_all(path.parent().unwrap_or(Path::new("")))?;
    all.extend(created);
    let json = serde_json::to_vec_pretty(&State {
        dirs: all,
        root_relative: true,
    })
    .unwrap_or_default();
    root.write_atomic(path, &json, 0o644)?;
    Ok(())
}

/// Remove the state file and every directory install created that is now empty.
fn drop_state(root: &Root) {
    let dirs = load_state(root);
    let _ = root.remove_file(Path::new(STATE));
    for d in dirs.iter().rev() {
        let _ = root.remove_dir(d);
    }
}

/// The directory of a root-relative path.
fn parent(rel: &Path) -> &Path {
    rel.parent().unwrap_or(Path::new(""))
}

fn write_file(
    root: &Root,
    rel: &Path,
    text: &str,
    mode: u32,
    created: &mut Vec<PathBuf>,
) -> Result<(), ServiceError> {
    if let Some((existing, _)) = read_text(root, rel)?
        && !existing.contains(MARKER)
    {
        return Err(ServiceError::Foreign {
            path: root.shown(rel),
        });
    }
    created.extend(root.create_dir_all(parent(rel))?);
    root.write_atomic(rel, text.as_bytes(), mode)?;
    Ok(())
}

fn link(
    root: &Root,
    target: &str,
    at: &Path,
    created: &mut Vec<PathBuf>,
) -> Result<(), ServiceError> {
    created.extend(root.create_dir_all(parent(at))?);
    if root.read_link(at)?.is_some_and(|t| t == Path::new(target)) {
        return Ok(());
    }
    root.remove_file(at)?;
    root.symlink(Path::new(target), at)?;
    Ok(())
}

/// The rc.local with our line added (before a final `exit 0`, where rc.local scripts
/// end), or created with a header.
fn rc_with_line(text: &str, line: String, header: String) -> String {
    let kept: Vec<&str> = text.lines().filter(|l| !is_our_line(l)).collect();
    let mut out = Vec::new();
    if kept.is_empty() {
        out.push(header);
    }
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
    new_text
}

/// Write and enable the boot service.
pub fn install(init: Init, root: &Root, cmd: &BootCommand) -> Result<ServiceReport, ServiceError> {
    let rc = rc_file(root);
    let writes: Vec<&Path> = match init {
        Init::Systemd => vec![Path::new(UNIT), Path::new(UNIT_WANTS)],
        Init::Openrc => vec![Path::new(OPENRC), Path::new(OPENRC_LINK)],
        Init::Sysv => vec![rc],
    };
    // Every path fails here, before the first write, if it would fail at all for a
    // link on the way (dangling, a loop): a refused install leaves the root as it was.
    for p in writes.iter().copied().chain([Path::new(STATE)]) {
        root.check(p)?;
    }
    let mut dirs = Vec::new();
    match init {
        Init::Systemd => {
            write_file(root, Path::new(UNIT), &systemd_unit(cmd), 0o644, &mut dirs)?;
            // What `systemctl enable` does; works offline and in another root.
            link(root, &format!("/{UNIT}"), Path::new(UNIT_WANTS), &mut dirs)?;
            if root.is_host_root() && Path::new("/run/systemd/system").exists() {
                let _ = std::process::Command::new("systemctl")
                    .arg("daemon-reload")
                    .status();
            }
        }
        Init::Openrc => {
            write_file(
                root,
                Path::new(OPENRC),
                &openrc_script(cmd),
                0o755,
                &mut dirs,
            )?;
            link(
                root,
                &format!("/{OPENRC}"),
                Path::new(OPENRC_LINK),
                &mut dirs,
            )?;
        }
        Init::Sysv => {
            let (text, mode) = read_text(root, rc)?.unwrap_or((String::new(), 0o755));
            let new_text = rc_with_line(&text, rc_line(cmd), rc_header(rc));
            dirs.extend(root.create_dir_all(parent(rc))?);
            root.write_atomic(rc, new_text.as_bytes(), mode | 0o700)?;
        }
    }
    save_state(root, dirs)?;
    Ok(ServiceReport {
        init,
        root: root.path().display().to_string(),
        paths: writes
            .iter()
            .map(|p| root.shown(p).display().to_string())
            .collect(),
        installed: true,
        up_to_date: true,
        command: Some(cmd.shell()),
        packaged: false,
    })
}

/// Remove exactly what `install` wrote.
/// OpenRC keeps a started service's state in /run/openrc (`started/archctl`, a link to
/// the script) until it is stopped or zapped; removing the script alone would leave it
/// (found in the OpenRC guest). On the running system (the host's root, OpenRC up), the
/// script's own `zap` resets the state to stopped, running nothing (the service has no
/// stop action: what it registered stays). Returns the state link it cleared.
fn openrc_zap(root: &Root) -> Option<String> {
    if !root.is_host_root() {
        return None;
    }
    let started = Path::new("/run/openrc/started/archctl");
    let script = Path::new("/").join(OPENRC);
    let ours = read_text(root, Path::new(OPENRC))
        .ok()
        .flatten()
        .is_some_and(|(t, _)| t.contains(MARKER));
    if !ours || std::fs::symlink_metadata(started).is_err() {
        return None;
    }
    let zapped = std::process::Command::new(&script)
        .arg("zap")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (zapped && std::fs::symlink_metadata(started).is_err()).then(|| started.display().to_string())
}

pub fn uninstall(init: Init, root: &Root) -> Result<ServiceReport, ServiceError> {
    let mut removed = Vec::new();
    let mut remove_marked = |rel: &str, is_link: bool| -> Result<(), ServiceError> {
        let rel = Path::new(rel);
        let gone = if is_link {
            // A link to a package's unit is the package manager's (deb-systemd-helper
            // enabled it), not install's.
            let packaged = |t: &Path| PACKAGED_UNITS.iter().any(|u| t == Path::new("/").join(u));
            root.read_link(rel)?.is_some_and(|t| !packaged(&t)) && root.remove_file(rel)?
        } else {
            match read_text(root, rel)? {
                // Where the text is: a link at `rel` (inside the root) was written through.
                Some((t, _)) if t.contains(MARKER) => root.remove_file(&root.real(rel)?)?,
                _ => false,
            }
        };
        if gone {
            removed.push(root.shown(rel).display().to_string());
        }
        Ok(())
    };
    match init {
        Init::Systemd => {
            remove_marked(UNIT_WANTS, true)?;
            remove_marked(UNIT, false)?;
        }
        Init::Openrc => {
            remove_marked(OPENRC_LINK, true)?;
            let zapped = openrc_zap(root);
            remove_marked(OPENRC, false)?;
            removed.extend(zapped);
        }
        Init::Sysv => {
            let file = rc_file(root);
            if let Some((text, mode)) = read_text(root, file)? {
                let header = rc_header(file);
                let created = text.starts_with(&header);
                let kept: Vec<&str> = text.lines().filter(|l| !is_our_line(l)).collect();
                let header_lines = header.lines().count();
                if created && kept.len() <= header_lines {
                    root.remove_file(&root.real(file)?)?;
                } else if kept.len() != text.lines().count() {
                    let mut t = kept.join("\n");
                    t.push('\n');
                    root.write_atomic(file, t.as_bytes(), mode)?;
                }
                if kept.len() != text.lines().count() {
                    removed.push(root.shown(file).display().to_string());
                }
            }
        }
    }
    drop_state(root);
    Ok(ServiceReport {
        init,
        root: root.path().display().to_string(),
        paths: removed,
        installed: false,
        up_to_date: true,
        command: None,
        packaged: false,
    })
}

/// Is the service installed, and is it what this archctl would write?
pub fn status(init: Init, root: &Root, cmd: &BootCommand) -> ServiceReport {
    let text = |p: &Path| read_text(root, p).ok().flatten().map(|(t, _)| t);
    let is_there = |p: &Path| root.exists(p) || root.read_link(p).ok().flatten().is_some();
    // install's unit in /etc, which systemd reads first, else a package's.
    let packaged_unit = match init {
        Init::Systemd if !is_there(Path::new(UNIT)) => PACKAGED_UNITS
            .iter()
            .map(Path::new)
            .find(|p| root.exists(p)),
        _ => None,
    };
    let unit = packaged_unit.unwrap_or(Path::new(UNIT));
    let (paths, expected): (Vec<&Path>, Option<(&Path, String)>) = match init {
        Init::Systemd => (
            vec![unit, Path::new(UNIT_WANTS)],
            Some((unit, systemd_unit(cmd))),
        ),
        Init::Openrc => (
            vec![Path::new(OPENRC), Path::new(OPENRC_LINK)],
            Some((Path::new(OPENRC), openrc_script(cmd))),
        ),
        Init::Sysv => (vec![rc_file(root)], None),
    };
    let present: Vec<String> = paths
        .iter()
        .filter(|p| is_there(p))
        .map(|p| root.shown(p).display().to_string())
        .collect();
    let rc = || text(rc_file(root));
    let installed = match init {
        Init::Sysv => rc().is_some_and(|t| t.lines().any(is_our_line)),
        _ => present.len() == paths.len(),
    };
    let up_to_date = match &expected {
        Some((p, want)) => text(p).is_some_and(|t| t == *want),
        None => rc().is_some_and(|t| t.lines().any(|l| l == rc_line(cmd))),
    };
    ServiceReport {
        init,
        root: root.path().display().to_string(),
        paths: present,
        installed,
        up_to_date: installed && up_to_date,
        command: Some(cmd.shell()),
        packaged: packaged_unit.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(binary: &str) -> BootCommand {
        BootCommand {
            binary: binary.into(),
            config: None,
        }
    }

    const DEB_UNIT: &str = "usr/lib/systemd/system/archctl.service";

    /// A root laid out as archctl's .deb leaves it: the unit in /usr/lib, enabled by
    /// deb-systemd-helper (a link naming /lib/systemd/system/..., as it writes on a
    /// merged-/usr system, where /lib is a link to usr/lib).
    fn deb_root(enabled: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("usr/lib/systemd/system")).unwrap();
        std::os::unix::fs::symlink("usr/lib", p.join("lib")).unwrap();
        std::fs::write(p.join(DEB_UNIT), systemd_unit(&cmd("/usr/bin/archctl"))).unwrap();
        if enabled {
            std::fs::create_dir_all(p.join("etc/systemd/system/multi-user.target.wants")).unwrap();
            std::os::unix::fs::symlink("/lib/systemd/system/archctl.service", p.join(UNIT_WANTS))
                .unwrap();
        }
        dir
    }

    #[test]
    fn status_recognises_the_packaged_unit() {
        let dir = deb_root(true);
        let root = Root::open(dir.path()).unwrap();
        let r = status(Init::Systemd, &root, &cmd("/usr/bin/archctl"));
        assert!(r.installed && r.up_to_date && r.packaged, "{r:?}");
        assert_eq!(r.paths.len(), 2, "{r:?}");
        assert!(r.paths[0].ends_with(DEB_UNIT), "{r:?}");
        assert!(r.paths[1].ends_with(UNIT_WANTS), "{r:?}");
        // Another binary than the unit runs: installed, not up to date.
        let other = status(Init::Systemd, &root, &cmd("/usr/local/bin/archctl"));
        assert!(other.installed && !other.up_to_date && other.packaged);
        // The JSON keeps its fields and adds `packaged`.
        let json = serde_json::to_value(&r).unwrap();
        for k in [
            "init",
            "root",
            "paths",
            "installed",
            "up_to_date",
            "packaged",
        ] {
            assert!(json.get(k).is_some(), "{k} missing in {json}");
        }
    }

    #[test]
    fn a_packaged_unit_not_enabled_is_not_installed() {
        let dir = deb_root(false);
        let root = Root::open(dir.path()).unwrap();
        let r = status(Init::Systemd, &root, &cmd("/usr/bin/archctl"));
        assert!(!r.installed && !r.up_to_date && r.packaged, "{r:?}");
        assert_eq!(r.paths.len(), 1, "{r:?}");
    }

    /// A root without the package: nothing is reported packaged.
    #[test]
    fn no_unit_is_not_installed_and_not_packaged() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let r = status(Init::Systemd, &root, &cmd("/usr/bin/archctl"));
        assert!(!r.installed && !r.packaged && r.paths.is_empty(), "{r:?}");
    }

    /// install's unit in /etc overrides the package's (as systemd reads it), and
    /// uninstall removes exactly install's files: the package's unit, and the link
    /// deb-systemd-helper made to it, stay.
    #[test]
    fn install_overrides_and_uninstall_leaves_the_package_alone() {
        let dir = deb_root(false);
        let root = Root::open(dir.path()).unwrap();
        let bin = &cmd("/opt/archctl");
        install(Init::Systemd, &root, bin).unwrap();
        let r = status(Init::Systemd, &root, bin);
        assert!(r.installed && r.up_to_date && !r.packaged, "{r:?}");
        uninstall(Init::Systemd, &root).unwrap();
        assert!(dir.path().join(DEB_UNIT).exists());
        assert!(!dir.path().join(UNIT).exists());

        let dir = deb_root(true);
        let root = Root::open(dir.path()).unwrap();
        let u = uninstall(Init::Systemd, &root).unwrap();
        assert!(u.paths.is_empty(), "{u:?}");
        assert!(std::fs::symlink_metadata(dir.path().join(UNIT_WANTS)).is_ok());
        let r = status(Init::Systemd, &root, &cmd("/usr/bin/archctl"));
        assert!(r.installed && r.packaged, "{r:?}");
    }
}
