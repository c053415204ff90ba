//! `/etc/archctl/config.toml`: what `archctl boot` applies at every boot.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    arch::Table,
    binfmt::Flags,
    emulator::Search,
    plan::{EnableOptions, Selection},
};

/// Default location (`--config` / `ARCHCTL_CONFIG` override it).
pub const DEFAULT_PATH: &str = "/etc/archctl/config.toml";

/// The most of a configuration file archctl reads: the commented default is under 2 KiB.
pub const MAX_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: {why}")]
    Invalid { path: PathBuf, why: String },
    #[error("config {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path} exists already")]
    Exists { path: PathBuf },
    /// A FIFO, device, socket or directory: never read.
    #[error("config {}: is {what}, not a regular file", path.display())]
    NotRegular { path: PathBuf, what: &'static str },
    #[error("config {}: larger than {}, the most archctl reads of it", path.display(), crate::fsutil::human_size(MAX_BYTES))]
    TooLarge { path: PathBuf },
}

impl ConfigError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ConfigError::Exists { .. } => Some("pass --force to overwrite it".into()),
            ConfigError::Invalid { .. } => {
                Some("`archctl config init --output FILE` writes a commented example".into())
            }
            ConfigError::NotRegular { .. } => Some(
                "point --config (or ARCHCTL_CONFIG) at a regular file; `archctl config init --output FILE` writes one".into(),
            ),
            ConfigError::TooLarge { .. } => Some(
                "a configuration is a few lines: point --config (or ARCHCTL_CONFIG) at archctl's config.toml".into(),
            ),
            ConfigError::Io { .. } => None,
        }
    }
}

/// `architectures = "all"` or a list of names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Architectures {
    Keyword(String),
    List(Vec<String>),
}

/// The `[binfmt]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinfmtConfig {
    /// "all" (every architecture this host does not run natively) or a list.
    #[serde(default = "all")]
    pub architectures: Architectures,
    /// binfmt_misc flags, a subset of POCF.
    #[serde(default = "fix_binary")]
    pub flags: String,
    /// Where to look for qemu-<arch>-static first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator_dir: Option<PathBuf>,
    /// Run the test programs after registering (slower boot).
    #[serde(default)]
    pub verify: bool,
    /// Replace differing entries and register in front of other handlers.
    #[serde(default)]
    pub force: bool,
}

fn all() -> Architectures {
    Architectures::Keyword("all".into())
}

fn fix_binary() -> String {
    "F".into()
}

impl Default for BinfmtConfig {
    fn default() -> Self {
        BinfmtConfig {
            architectures: all(),
            flags: fix_binary(),
            emulator_dir: None,
            verify: false,
            force: false,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub binfmt: BinfmtConfig,
    /// Per-architecture emulator files: `aarch64 = "/opt/qemu/qemu-aarch64-static"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub emulators: BTreeMap<String, PathBuf>,
}

/// The commented default `archctl config init` writes.
pub const DEFAULT_TEXT: &str = r#"# archctl configuration, applied at every boot by `archctl boot` (the boot service).
# `archctl config show` prints the effective values.

[binfmt]
# "all": every architecture this host does not run natively and has an emulator for.
# Or a list of QEMU names, aliases or platforms: ["x86_64", "linux/arm/v7", "riscv64"].
architectures = "all"

# binfmt_misc flags, a subset of POCF. F opens the emulator at registration so it works
# in every container and chroot. C (credentials) is a privilege risk with qemu-user:
# see `archctl enable --help`.
flags = "F"

# Look here first for qemu-<arch>-static (then /usr/bin, /usr/local/bin,
# /usr/local/lib/archctl/emulators).
# emulator_dir = "/usr/local/lib/archctl/emulators"

# Run each architecture's test program after registering (adds ~100 ms to the boot).
verify = false

# Replace differing qemu-* entries, and register in front of other handlers (rosetta).
force = false

# Per-architecture emulator files, overriding the search:
# [emulators]
# aarch64 = "/opt/qemu/qemu-aarch64-static"
"#;

impl Config {
    /// `--config`, else `ARCHCTL_CONFIG`, else the default path.
    pub fn path(given: Option<&Path>) -> PathBuf {
        given
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("ARCHCTL_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
    }

    /// Parse and validate; a missing file is the default configuration. Only a regular
    /// file is read, and at most [`MAX_BYTES`] of it (see [`crate::fsutil::read_bounded`]):
    /// a FIFO, `/dev/zero` or a directory is an error, never a hang or a flood.
    pub fn load(path: &Path, table: &Table) -> Result<(Config, bool), ConfigError> {
        use crate::fsutil::OpenError;
        let bytes = match crate::fsutil::read_bounded(path, MAX_BYTES) {
            Ok(b) => b,
            Err(OpenError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Config::default(), false));
            }
            Err(OpenError::Io { path, source }) => return Err(ConfigError::Io { path, source }),
            Err(OpenError::NotRegular { path, what }) => {
                return Err(ConfigError::NotRegular { path, what });
            }
            Err(OpenError::TooLarge { path, .. }) => return Err(ConfigError::TooLarge { path }),
        };
        let text = String::from_utf8(bytes).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            why: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        })?;
        let c = Config::parse(&text, table).map_err(|why| ConfigError::Invalid {
            path: path.to_path_buf(),
            why,
        })?;
        Ok((c, true))
    }

    /// Parse and validate text; errors name the key.
    pub fn parse(text: &str, table: &Table) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!("line {line}: {msg}")
                }
                None => msg,
            }
        })?;
        match &c.binfmt.architectures {
            Architectures::Keyword(k) if k == "all" => {}
            Architectures::Keyword(k) => {
                return Err(format!(
                    "binfmt.architectures: \"{k}\" is neither \"all\" nor a list of architectures"
                ));
            }
            Architectures::List(names) => {
                table
                    .lookup_all(names)
                    .map_err(|e| format!("binfmt.architectures: {e}"))?;
            }
        }
        Flags::parse(&c.binfmt.flags).map_err(|e| format!("binfmt.flags: {e}"))?;
        for (arch, p) in &c.emulators {
            table
                .lookup(arch)
                .map_err(|e| format!("emulators.{arch}: {e}"))?;
            if !p.is_absolute() {
                return Err(format!(
                    "emulators.{arch}: \"{}\" is not an absolute path",
                    p.display()
                ));
            }
        }
        Ok(c)
    }

    /// What `boot` does with it.
    pub fn enable_options(&self, table: &Table) -> EnableOptions {
        let selection = match &self.binfmt.architectures {
            Architectures::List(names) => Selection::Archs(names.clone()),
            Architectures::Keyword(_) => Selection::All,
        };
        let per_arch = self
            .emulators
            .iter()
            .filter_map(|(a, p)| table.lookup(a).ok().map(|r| (r.name.clone(), p.clone())))
            .collect();
        EnableOptions {
            selection,
            search: Search {
                explicit: None,
                dir: self.binfmt.emulator_dir.clone(),
                per_arch,
            },
            flags: Flags::parse(&self.binfmt.flags).unwrap_or(Flags::FIX_BINARY),
            force: self.binfmt.force,
            skip_missing: true,
            skip_conflicts: true,
            isolate_failures: true,
        }
    }
}

/// Write the commented default configuration to `path` (`archctl config init`):
/// atomically, readable by all (it holds no secrets, and `archctl config show` works for
/// any user), never over an existing file unless `force`, and never over anything but a
/// regular file (the rename would put a file where a device, FIFO or socket was: `--output
/// /dev/null --force` must not replace /dev/null).
pub fn write_default(path: &Path, force: bool) -> Result<(), ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Ok(m) = std::fs::metadata(path) {
        if let Some(what) = crate::fsutil::special_kind(m.file_type()) {
            return Err(ConfigError::NotRegular {
                path: path.to_path_buf(),
                what,
            });
        }
        if !force {
            return Err(ConfigError::Exists {
                path: path.to_path_buf(),
            });
        }
    }
    std::fs::create_dir_all(crate::fsutil::parent_dir(path)).map_err(io)?;
    crate::fsutil::write_atomic(path, DEFAULT_TEXT.as_bytes(), 0o644).map_err(|e| io(e.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_text_is_the_default_config() {
        let t = Table::builtin();
        assert_eq!(Config::parse(DEFAULT_TEXT, t).unwrap(), Config::default());
        assert_eq!(Config::parse("", t).unwrap(), Config::default());
    }

    #[test]
    fn lists_emulators_and_errors_naming_the_key() {
        let t = Table::builtin();
        let c = Config::parse(
            "[binfmt]\narchitectures = [\"amd64\", \"linux/arm/v7\"]\nverify = true\n[emulators]\narm64 = \"/opt/q\"\n",
            t,
        )
        .unwrap();
        assert_eq!(
            c.binfmt.architectures,
            Architectures::List(vec!["amd64".into(), "linux/arm/v7".into()])
        );
        let o = c.enable_options(t);
        assert_eq!(
            o.search.per_arch.get("aarch64").unwrap(),
            &PathBuf::from("/opt/q")
        );
        for (text, key) in [
            ("[binfmt]\ncolour = 1\n", "colour"),
            ("[binfmt]\nflags = \"FX\"\n", "binfmt.flags"),
            (
                "[binfmt]\narchitectures = [\"z80\"]\n",
                "binfmt.architectures",
            ),
            (
                "[binfmt]\narchitectures = \"some\"\n",
                "binfmt.architectures",
            ),
            ("[binfmt]\nverify = \"yes\"\n", "line 2"),
            ("[emulators]\nz80 = \"/x\"\n", "emulators.z80"),
            ("[emulators]\narm64 = \"q\"\n", "absolute"),
            ("[other]\n", "other"),
        ] {
            let e = Config::parse(text, t).unwrap_err();
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }
}
