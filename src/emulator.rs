//! Finding and checking QEMU user-mode emulators: an ELF for this host, statically
//! linked (with the F flag the kernel runs it inside containers and chroots, where a
//! dynamic loader and libraries of the host do not exist).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{
    arch::{Rule, Table},
    binfmt::{Flags, Registration},
    elf::{ElfError, ElfInfo},
    host::Native,
};

/// Directories searched when no `--emulator`/`--emulator-dir` is given, in order, for
/// `qemu-<arch>-static`; then `/usr/bin/qemu-<arch>` (Alpine's static packages).
pub const DEFAULT_DIRS: &[&str] = &[
    "/usr/bin",
    "/usr/local/bin",
    "/usr/local/lib/archctl/emulators",
];

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("no emulator for {arch}: none of {searched} exists")]
    NotFound { arch: String, searched: String },
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error(
        "emulator {path} does not run on this host: it is a {found} binary, this host is {host}"
    )]
    WrongMachine {
        path: PathBuf,
        found: String,
        host: String,
    },
    #[error(
        "emulator {path} is dynamically linked (interpreter {interp}): with the F flag the kernel starts it inside containers and chroots, where {interp} and the host's libraries do not exist, so it would fail there"
    )]
    Dynamic { path: PathBuf, interp: String },
}

impl EmulatorError {
    pub fn hint(&self) -> Option<String> {
        match self {
            EmulatorError::NotFound { .. } => Some(
                "install the static emulators (Debian/Ubuntu: apt-get install qemu-user-static; Fedora: dnf install qemu-user-static; Alpine: apk add qemu-<arch>) or pass --emulator PATH".into(),
            ),
            EmulatorError::Dynamic { .. } => Some(
                "install the static build (Debian/Ubuntu: apt-get install qemu-user-static) or drop F with --flags (then containers will not find it)".into(),
            ),
            EmulatorError::WrongMachine { .. } => {
                Some("use the emulator built for this machine (qemu-user-static for this host's architecture)".into())
            }
            EmulatorError::Elf(_) => Some("point --emulator at a qemu-user-static binary".into()),
        }
    }
}

/// A usable emulator.
#[derive(Debug, Clone, Serialize)]
pub struct Emulator {
    pub path: PathBuf,
    #[serde(skip)]
    pub info: ElfInfo,
}

/// Where to look for an emulator.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// `--emulator`: exactly this file.
    pub explicit: Option<PathBuf>,
    /// `--emulator-dir`: `qemu-<arch>-static` or `qemu-<arch>` in this directory.
    pub dir: Option<PathBuf>,
    /// Per-architecture files (config `[emulators]`), by QEMU target name.
    pub per_arch: std::collections::BTreeMap<String, PathBuf>,
}

impl Search {
    /// Candidate paths for a rule, in search order.
    pub fn candidates(&self, rule: &Rule) -> Vec<PathBuf> {
        let e = &rule.emulator;
        if let Some(p) = self.explicit.as_ref().or(self.per_arch.get(&rule.name)) {
            return vec![p.clone()];
        }
        if let Some(d) = &self.dir {
            return vec![
                d.join(format!("qemu-{e}-static")),
                d.join(format!("qemu-{e}")),
            ];
        }
        let mut v: Vec<PathBuf> = DEFAULT_DIRS
            .iter()
            .map(|d| Path::new(d).join(format!("qemu-{e}-static")))
            .collect();
        v.push(PathBuf::from(format!("/usr/bin/qemu-{e}")));
        v
    }

    /// The first candidate that passes [`check`]; when candidates exist but all fail,
    /// the first one's problem.
    /// The entry `rule` gets with the emulator this search finds (static one required
    /// with F): what `enable` plans and `exec` registers.
    pub fn registration(
        &self,
        rule: &Rule,
        table: &Table,
        native: &Native,
        flags: Flags,
    ) -> Result<Registration, EmulatorError> {
        let emu = self.find(rule, table, native, flags.fix_binary)?;
        Ok(rule.registration(emu.path.to_string_lossy().into_owned(), flags))
    }

    pub fn find(
        &self,
        rule: &Rule,
        table: &Table,
        native: &Native,
        require_static: bool,
    ) -> Result<Emulator, EmulatorError> {
        let candidates = self.candidates(rule);
        let mut first_err = None;
        for c in &candidates {
            match check(c, table, native, require_static) {
                Ok(e) => return Ok(e),
                // Absent: try the next place (no separate stat: this is on the boot path).
                Err(EmulatorError::Elf(ElfError::Io { source, .. }))
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| EmulatorError::NotFound {
            arch: rule.name.clone(),
            searched: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }))
    }
}

/// Check that a file is an ELF this host runs and (if required) statically linked.
pub fn check(
    path: &Path,
    table: &Table,
    native: &Native,
    require_static: bool,
) -> Result<Emulator, EmulatorError> {
    let info = ElfInfo::read(path)?;
    if !native.runs(table, &info.header) {
        return Err(EmulatorError::WrongMachine {
            path: path.to_path_buf(),
            found: info.describe(),
            host: native.arches.join("/"),
        });
    }
    if require_static && let Some(interp) = &info.interpreter {
        return Err(EmulatorError::Dynamic {
            path: path.to_path_buf(),
            interp: interp.clone(),
        });
    }
    Ok(Emulator {
        path: path.to_path_buf(),
        info,
    })
}
