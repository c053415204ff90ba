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
            EmulatorError::Elf(ElfError::NotRegular { .. }) => Some(
                "an emulator must be a regular file (a qemu-user-static binary): point --emulator, --emulator-dir or the configuration's [emulators] at one".into(),
            ),
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
    /// Candidate paths for a rule, in search order, made one at a time (the first one
    /// is usually the one: this is on the boot path).
    pub fn candidates<'a>(&'a self, rule: &'a Rule) -> impl Iterator<Item = PathBuf> + 'a {
        let e = &rule.emulator;
        let one = self.explicit.as_ref().or(self.per_arch.get(&rule.name));
        let (dirs, alpine): (Vec<&Path>, bool) = match (one, &self.dir) {
            (Some(_), _) => (Vec::new(), false),
            (None, Some(d)) => (vec![d.as_path()], false),
            (None, None) => (DEFAULT_DIRS.iter().map(Path::new).collect(), true),
        };
        let in_dir = self.dir.as_ref().map(|d| d.join(format!("qemu-{e}")));
        one.cloned()
            .into_iter()
            .chain(
                dirs.into_iter()
                    .map(move |d| d.join(format!("qemu-{e}-static"))),
            )
            .chain(in_dir.into_iter().filter(move |_| one.is_none()))
            .chain(alpine.then(|| PathBuf::from(format!("/usr/bin/qemu-{e}"))))
    }

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

    /// The first candidate that passes [`check`]; when candidates exist but all fail,
    /// the first one's problem.
    pub fn find(
        &self,
        rule: &Rule,
        table: &Table,
        native: &Native,
        require_static: bool,
    ) -> Result<Emulator, EmulatorError> {
        let mut first_err = None;
        for c in self.candidates(rule) {
            let system = c
                .parent()
                .is_some_and(|d| DEFAULT_DIRS.iter().any(|s| d.as_os_str() == *s));
            let info = if system {
                ElfInfo::read_in_system_dir(&c)
            } else {
                ElfInfo::read(&c)
            };
            match info
                .map_err(EmulatorError::from)
                .and_then(|info| checked(&c, info, table, native, require_static))
            {
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
            searched: self
                .candidates(rule)
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }))
    }
}

/// Check that a file is an ELF this host runs and (if required) statically linked. Only
/// a regular file's headers are read ([`ElfInfo::read`]): a FIFO or device named as an
/// emulator is an error, never a hang.
pub fn check(
    path: &Path,
    table: &Table,
    native: &Native,
    require_static: bool,
) -> Result<Emulator, EmulatorError> {
    checked(path, ElfInfo::read(path)?, table, native, require_static)
}

/// [`check`] of headers already read.
fn checked(
    path: &Path,
    info: ElfInfo,
    table: &Table,
    native: &Native,
    require_static: bool,
) -> Result<Emulator, EmulatorError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_in_search_order() {
        let t = Table::builtin();
        let rule = t.get("aarch64").unwrap();
        let paths = |s: &Search| -> Vec<String> {
            s.candidates(rule)
                .map(|p| p.display().to_string())
                .collect()
        };
        assert_eq!(
            paths(&Search::default()),
            [
                "/usr/bin/qemu-aarch64-static",
                "/usr/local/bin/qemu-aarch64-static",
                "/usr/local/lib/archctl/emulators/qemu-aarch64-static",
                "/usr/bin/qemu-aarch64"
            ]
        );
        let dir = Search {
            dir: Some("/opt/q".into()),
            ..Default::default()
        };
        assert_eq!(
            paths(&dir),
            ["/opt/q/qemu-aarch64-static", "/opt/q/qemu-aarch64"]
        );
        let mut one = dir.clone();
        one.per_arch.insert("aarch64".into(), "/x/emu".into());
        assert_eq!(paths(&one), ["/x/emu"]);
        one.explicit = Some("/y/emu".into());
        assert_eq!(paths(&one), ["/y/emu"]);
    }
}
