//! The kernel interface: binfmt_misc entries, register strings, and the filesystem
//! operations behind a small trait ([`BinfmtFs`]) so that plans can be tested without a
//! kernel ([`MemoryBinfmt`]).

use std::{
    fmt,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::Serialize;

use crate::arch::{Rule, escape_bytes, magic_matches, representative_header};

/// Default mount point of binfmt_misc.
pub const DEFAULT_DIR: &str = "/proc/sys/fs/binfmt_misc";
/// statfs f_type of binfmt_misc (BINFMTFS_MAGIC).
pub const BINFMTFS_MAGIC: i64 = 0x4249_4e4d;

#[derive(Debug, thiserror::Error)]
pub enum BinfmtError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("binfmt_misc is not available at {path}: the kernel has no binfmt_misc support loaded")]
    Unavailable { path: PathBuf },
    #[error("cannot mount binfmt_misc at {path}: {source}")]
    Mount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("permission denied writing {path}: changing binfmt_misc needs root")]
    PermissionDenied { path: PathBuf },
    #[error("kernel refused entry {name}: {why}")]
    Rejected { name: String, why: String },
    #[error("cannot parse binfmt_misc entry {name}: {why}")]
    Parse { name: String, why: String },
    #[error("interrupted by a signal before the change was complete")]
    Interrupted,
    #[error("entry {name} (matched by extension) stays removed: archctl cannot register it again")]
    CannotRestore { name: String },
    #[error("invalid flags \"{0}\": use a subset of P, O, C, F (e.g. F or OCF)")]
    BadFlags(String),
    #[error(
        "binfmt_misc is switched off at {path}: its status file says disabled, so the kernel ignores every entry"
    )]
    SwitchedOff { path: PathBuf },
    #[error(
        "{path} is neither a binfmt_misc mount nor an empty directory: archctl does not mount over files"
    )]
    NotEmpty { path: PathBuf },
    #[error("invalid entry field {field} \"{value}\": {why}")]
    BadField {
        field: &'static str,
        value: String,
        why: &'static str,
    },
}

impl BinfmtError {
    fn io(path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::PermissionDenied {
            BinfmtError::PermissionDenied {
                path: path.to_path_buf(),
            }
        } else {
            BinfmtError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            BinfmtError::Unavailable { .. } => Some("modprobe binfmt_misc".into()),
            BinfmtError::SwitchedOff { path } => {
                Some(format!("switch it on: echo 1 > {}", path.join("status").display()))
            }
            BinfmtError::NotEmpty { .. } => Some(
                "point --binfmt-dir at binfmt_misc's mount (/proc/sys/fs/binfmt_misc) or at an empty directory"
                    .into(),
            ),
            BinfmtError::PermissionDenied { .. } => Some(
                "run it as root (sudo archctl ...), or use `archctl exec --arch ARCH -- CMD` for rootless emulation"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// binfmt_misc flags, printed in the kernel's order (P, O, C, F).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// P: preserve argv[0].
    pub preserve_argv0: bool,
    /// O: pass the binary as an open file descriptor.
    pub open_binary: bool,
    /// C: credentials from the binary (implies O).
    pub credentials: bool,
    /// F: open the interpreter at registration ("fix binary").
    pub fix_binary: bool,
}

impl Flags {
    pub const FIX_BINARY: Flags = Flags {
        preserve_argv0: false,
        open_binary: false,
        credentials: false,
        fix_binary: true,
    };

    /// Parse a subset of `POCF` (any order, any case). `C` implies `O`, as in the kernel.
    pub fn parse(s: &str) -> Result<Flags, BinfmtError> {
        if s.chars().all(|c| "POCF".contains(c.to_ascii_uppercase())) {
            Ok(Flags::parse_known(s))
        } else {
            Err(BinfmtError::BadFlags(s.to_string()))
        }
    }

    /// The flags among `POCF` in `s`, ignoring any other letter.
    pub fn parse_known(s: &str) -> Flags {
        let mut f = Flags::default();
        for c in s.chars() {
            match c.to_ascii_uppercase() {
                'P' => f.preserve_argv0 = true,
                'O' => f.open_binary = true,
                'C' => {
                    f.credentials = true;
                    f.open_binary = true
                }
                'F' => f.fix_binary = true,
                _ => {}
            }
        }
        f
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (on, c) in [
            (self.preserve_argv0, 'P'),
            (self.open_binary, 'O'),
            (self.credentials, 'C'),
            (self.fix_binary, 'F'),
        ] {
            if on {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for Flags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How an entry recognises binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    Magic {
        offset: u8,
        magic: Vec<u8>,
        mask: Option<Vec<u8>>,
    },
    Extension(String),
}

impl Matcher {
    /// Would this matcher catch a file starting with `header`?
    pub fn matches(&self, header: &[u8]) -> bool {
        match self {
            Matcher::Magic {
                offset,
                magic,
                mask,
            } => magic_matches(header, *offset, magic, mask.as_deref().unwrap_or(&[])),
            Matcher::Extension(_) => false,
        }
    }

    /// Same bytes compared, whatever the kernel did to the masked-out magic bits.
    pub fn equivalent(&self, offset: u8, magic: &[u8], mask: &[u8]) -> bool {
        match self {
            Matcher::Magic {
                offset: o,
                magic: m,
                mask: k,
            } => {
                let k: Vec<u8> = k.clone().unwrap_or_else(|| vec![0xff; m.len()]);
                *o == offset
                    && m.len() == magic.len()
                    && k == mask
                    && m.iter()
                        .zip(magic)
                        .zip(&k)
                        .all(|((a, b), k)| a & k == b & k)
            }
            Matcher::Extension(_) => false,
        }
    }
}

/// One entry as the kernel shows it in `<binfmt_misc>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub enabled: bool,
    pub interpreter: String,
    pub flags: Flags,
    pub matcher: Matcher,
}

impl Entry {
    /// Parse the kernel's text for an entry.
    pub fn parse(name: &str, text: &str) -> Result<Entry, BinfmtError> {
        let bad = |why: String| BinfmtError::Parse {
            name: name.to_string(),
            why,
        };
        let mut enabled = None;
        let mut interpreter = None;
        let mut flags = Flags::default();
        let mut offset = 0u8;
        let mut magic = None;
        let mut mask = None;
        let mut extension = None;
        // Lines end at '\n' only: `lines()` would also take a '\r' that is part of a path.
        for line in text.split('\n') {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "enabled" => enabled = Some(true),
                "disabled" => enabled = Some(false),
                "interpreter" => interpreter = Some(value.to_string()),
                // Lenient: a flag letter from a newer kernel must not make the whole
                // table unreadable.
                "flags:" => flags = Flags::parse_known(value.trim()),
                "offset" => {
                    offset = value
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("offset \"{value}\"")))?
                }
                "magic" => magic = Some(decode_hex(value).ok_or_else(|| bad("magic".into()))?),
                "mask" => mask = Some(decode_hex(value).ok_or_else(|| bad("mask".into()))?),
                // The kernel prints `.` and the extension, which may itself start with one.
                "extension" => {
                    extension = Some(value.strip_prefix('.').unwrap_or(value).to_string())
                }
                _ => {}
            }
        }
        let matcher = match (magic, extension) {
            (Some(magic), _) => Matcher::Magic {
                offset,
                magic,
                mask,
            },
            (None, Some(ext)) => Matcher::Extension(ext),
            (None, None) => return Err(bad("neither magic nor extension".into())),
        };
        Ok(Entry {
            name: name.to_string(),
            enabled: enabled.ok_or_else(|| bad("no enabled/disabled line".into()))?,
            interpreter: interpreter.ok_or_else(|| bad("no interpreter line".into()))?,
            flags,
            matcher,
        })
    }

    /// A registration that recreates this entry (used to restore a replaced entry).
    pub fn to_registration(&self) -> Option<Registration> {
        match &self.matcher {
            Matcher::Magic {
                offset,
                magic,
                mask,
            } => Some(Registration {
                name: self.name.clone(),
                offset: *offset,
                magic: magic.clone(),
                mask: mask.clone().unwrap_or_else(|| vec![0xff; magic.len()]),
                interpreter: self.interpreter.clone(),
                flags: self.flags,
            }),
            Matcher::Extension(_) => None,
        }
    }
}

/// Printable ASCII as itself, every other byte as `\xNN`.
fn escape_name(raw: &[u8]) -> String {
    raw.iter()
        .map(|&b| {
            if b.is_ascii_graphic() && b != b'\\' {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// An entry's text: the kernel prints it whole (at most a page) in one read, so one
/// buffer and one read(2) do; `read_to_string` sized its buffer from a zero st_size and
/// grew it read by read (a third of reading the table, on the boot path).
fn read_entry_file(p: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut f = File::open(p)?;
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    loop {
        if n == buf.len() {
            // The kernel's are one page; anything larger is not an entry.
            if n >= 64 * 1024 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "larger than 64 KiB: not a binfmt_misc entry",
                ));
            }
            buf.resize(n * 2, 0);
        }
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    buf.truncate(n);
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Hex as the kernel prints magic and mask. (Digit by digit: `from_str_radix` per byte
/// was a third of reading the table.)
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let s = s.trim().as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// The enabled entries that would catch programs of `rule` (by its representative
/// header), whatever their names: archctl's own, rosetta, another tool's.
pub fn handlers_for<'a>(entries: &'a [Entry], rule: &Rule) -> impl Iterator<Item = &'a Entry> {
    let header = representative_header(rule);
    entries
        .iter()
        .filter(move |e| e.enabled && e.matcher.matches(&header))
}

impl Rule {
    /// The entry archctl registers for this rule: `qemu-<target>` with the rule's magic
    /// and mask, run by `interpreter`.
    pub fn registration(&self, interpreter: String, flags: Flags) -> Registration {
        Registration {
            name: self.entry_name(),
            offset: self.offset,
            magic: self.magic.clone(),
            mask: self.mask.clone(),
            interpreter,
            flags,
        }
    }
}

/// A magic entry to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub name: String,
    pub offset: u8,
    pub magic: Vec<u8>,
    pub mask: Vec<u8>,
    pub interpreter: String,
    pub flags: Flags,
}

impl Registration {
    /// Check the fields the register syntax cannot carry.
    pub fn validate(&self) -> Result<(), BinfmtError> {
        let field = |field, value: &str, why| BinfmtError::BadField {
            field,
            value: value.to_string(),
            why,
        };
        if self.name.is_empty()
            || self.name.len() > 64
            || self.name == "."
            || self.name == ".."
            || self.name == "register"
            || self.name == "status"
            || self.name.contains(['/', ':', '\n'])
        {
            return Err(field("name", &self.name, "not a valid entry name"));
        }
        if self.interpreter.is_empty() || !self.interpreter.starts_with('/') {
            return Err(field(
                "interpreter",
                &self.interpreter,
                "must be an absolute path",
            ));
        }
        if self.interpreter.contains([':', '\n']) {
            return Err(field(
                "interpreter",
                &self.interpreter,
                "must not contain ':' or a newline (the register syntax's separators)",
            ));
        }
        // What the kernel's parser (fs/binfmt_misc.c) refuses with a bare EINVAL: a NUL
        // ends its strings; the magic must fit its 256-byte buffer at the offset, the
        // mask be as long; the whole string at most 1920 bytes.
        if self.name.contains('\0') {
            return Err(field("name", &self.name, "must not contain a NUL byte"));
        }
        if self.interpreter.contains('\0') {
            let why = "must not contain a NUL byte";
            return Err(field("interpreter", &self.interpreter, why));
        }
        let (len, room) = (self.magic.len(), 256 - usize::from(self.offset));
        if len == 0 || len > room || self.mask.len() != len {
            return Err(BinfmtError::BadField {
                field: "magic",
                value: format!(
                    "{} bytes at offset {}, mask {} bytes",
                    len,
                    self.offset,
                    self.mask.len()
                ),
                why: "the magic must be 1 to 256 bytes ending within the first 256, the mask as long",
            });
        }
        let length = self.register_string_len();
        if length > 1920 {
            return Err(BinfmtError::BadField {
                field: "register string",
                value: format!("{length} bytes"),
                why: "the kernel takes at most 1920 bytes (shorten the interpreter's path)",
            });
        }
        Ok(())
    }

    /// The string written to `<binfmt_misc>/register`.
    pub fn register_string(&self) -> String {
        format!(
            ":{}:M:{}:{}:{}:{}:{}",
            self.name,
            if self.offset == 0 {
                String::new()
            } else {
                self.offset.to_string()
            },
            escape_bytes(&self.magic),
            escape_bytes(&self.mask),
            self.interpreter,
            self.flags
        )
    }

    /// `register_string().len()`, counted without building it (validate runs on every
    /// registration of the boot path).
    fn register_string_len(&self) -> usize {
        let offset = match self.offset {
            0 => 0,
            1..=9 => 1,
            10..=99 => 2,
            _ => 3,
        };
        let f = self.flags;
        let flags = [f.preserve_argv0, f.open_binary, f.credentials, f.fix_binary]
            .iter()
            .filter(|on| **on)
            .count();
        // ":name:M:offset:magic:mask:interpreter:flags", each byte of magic and mask \xNN.
        8 + self.name.len()
            + offset
            + 4 * (self.magic.len() + self.mask.len())
            + self.interpreter.len()
            + flags
    }

    /// Is an existing entry exactly this registration (ignoring enabled)?
    pub fn same_as(&self, e: &Entry) -> bool {
        e.interpreter == self.interpreter
            && e.flags == self.flags
            && e.matcher.equivalent(self.offset, &self.magic, &self.mask)
    }

    /// What differs between an existing entry and this registration, for messages.
    pub fn differences(&self, e: &Entry) -> Vec<String> {
        let mut d = Vec::new();
        if e.interpreter != self.interpreter {
            d.push(format!(
                "interpreter {} (wanted {})",
                e.interpreter, self.interpreter
            ));
        }
        if e.flags != self.flags {
            d.push(format!("flags \"{}\" (wanted \"{}\")", e.flags, self.flags));
        }
        if !e.matcher.equivalent(self.offset, &self.magic, &self.mask) {
            d.push("magic/mask".into());
        }
        d
    }
}

/// What archctl needs from a binfmt_misc instance.
pub trait BinfmtFs: Send + Sync {
    fn dir(&self) -> &Path;
    /// Is binfmt_misc mounted at `dir`?
    fn is_mounted(&self) -> Result<bool, BinfmtError>;
    fn mount(&self) -> Result<(), BinfmtError>;
    /// Take back a mount this process made (lazily: open files on it may remain).
    fn unmount(&self) -> Result<(), BinfmtError>;
    /// The global `status` switch (`enabled`/`disabled`).
    fn status_enabled(&self) -> Result<bool, BinfmtError>;
    /// Every entry, sorted by name.
    fn entries(&self) -> Result<Vec<Entry>, BinfmtError>;
    fn entry(&self, name: &str) -> Result<Option<Entry>, BinfmtError>;
    fn register(&self, reg: &Registration) -> Result<(), BinfmtError>;
    /// Remove an entry; `Ok(false)` when there was none.
    fn remove(&self, name: &str) -> Result<bool, BinfmtError>;
    fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), BinfmtError>;
    /// Exclusive lock over this instance, held until the guard drops.
    fn lock(&self) -> Result<Lock, BinfmtError>;
}

/// An exclusive lock (flock on the binfmt_misc directory, or nothing for test doubles).
pub struct Lock {
    _file: Option<nix::fcntl::Flock<File>>,
}

/// The real kernel interface at a directory.
pub struct KernelBinfmt {
    dir: PathBuf,
    /// `register`, opened once: each write(2) on it is one registration, so a run that
    /// registers thirty entries needs one open, not thirty (this is on the boot path).
    register: Mutex<Option<File>>,
}

impl KernelBinfmt {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KernelBinfmt {
            dir: dir.into(),
            register: Mutex::new(None),
        }
    }

    fn write_file(&self, path: &Path, data: &str) -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).open(path)?;
        write_command(&mut f, data)
    }

    fn write_register(&self, data: &str) -> io::Result<()> {
        let mut guard = match self.register.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if guard.is_none() {
            *guard = Some(
                OpenOptions::new()
                    .write(true)
                    .open(self.dir.join("register"))?,
            );
        }
        match guard.as_mut() {
            Some(f) => write_command(f, data),
            None => Err(io::Error::other("register not open")),
        }
    }
}

/// binfmt_misc parses each write(2) as one command: write it whole, once.
fn write_command(f: &mut File, data: &str) -> io::Result<()> {
    let n = f.write(data.as_bytes())?;
    if n != data.len() {
        return Err(io::Error::other(format!(
            "short write ({n} of {} bytes)",
            data.len()
        )));
    }
    Ok(())
}

impl BinfmtFs for KernelBinfmt {
    fn dir(&self) -> &Path {
        &self.dir
    }

    fn is_mounted(&self) -> Result<bool, BinfmtError> {
        // Touching `register` first triggers a systemd automount, if there is one.
        let _ = fs::symlink_metadata(self.dir.join("register"));
        match nix::sys::statfs::statfs(&self.dir) {
            // f_type's C type differs between libcs and architectures.
            #[allow(clippy::unnecessary_cast)]
            Ok(s) => Ok(s.filesystem_type().0 as i64 == BINFMTFS_MAGIC),
            Err(nix::Error::ENOENT) => Ok(false),
            Err(e) => Err(BinfmtError::io(&self.dir, e.into())),
        }
    }

    fn mount(&self) -> Result<(), BinfmtError> {
        use nix::mount::{MsFlags, mount};
        if !self.dir.is_dir() && self.dir.starts_with("/proc/sys/fs") {
            // The directory appears when the module is loaded (as QEMU's script does).
            let _ = std::process::Command::new("modprobe")
                .arg("binfmt_misc")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        if !self.dir.is_dir() {
            return Err(BinfmtError::Unavailable {
                path: self.dir.clone(),
            });
        }
        // Mounting over files would hide them (and whatever archctl then wrote would not
        // be where the user looks).
        let has_files = fs::read_dir(&self.dir)
            .map_err(|e| BinfmtError::io(&self.dir, e))?
            .next()
            .is_some();
        if has_files {
            return Err(BinfmtError::NotEmpty {
                path: self.dir.clone(),
            });
        }
        mount(
            Some("binfmt_misc"),
            &self.dir,
            Some("binfmt_misc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|source| match source {
            nix::Error::ENODEV => BinfmtError::Unavailable {
                path: self.dir.clone(),
            },
            nix::Error::EPERM => BinfmtError::PermissionDenied {
                path: self.dir.clone(),
            },
            _ => BinfmtError::Mount {
                path: self.dir.clone(),
                source,
            },
        })
    }

    fn unmount(&self) -> Result<(), BinfmtError> {
        nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH).map_err(|source| {
            BinfmtError::Mount {
                path: self.dir.clone(),
                source,
            }
        })
    }

    fn status_enabled(&self) -> Result<bool, BinfmtError> {
        let p = self.dir.join("status");
        let s = read_entry_file(&p).map_err(|e| BinfmtError::io(&p, e))?;
        Ok(s.trim() == "enabled")
    }

    fn entries(&self) -> Result<Vec<Entry>, BinfmtError> {
        let rd = fs::read_dir(&self.dir).map_err(|e| BinfmtError::io(&self.dir, e))?;
        let mut out = Vec::new();
        for de in rd {
            let de = de.map_err(|e| BinfmtError::io(&self.dir, e))?;
            // A name that is not UTF-8 is listed with its odd bytes as \xNN (archctl
            // never registers such names; listing them beats hiding them).
            let name = match de.file_name().into_string() {
                Ok(n) => n,
                Err(raw) => escape_name(raw.as_encoded_bytes()),
            };
            if name == "register" || name == "status" {
                continue;
            }
            // An entry removed between readdir and read is simply gone.
            let p = de.path();
            match read_entry_file(&p) {
                Ok(text) => out.push(Entry::parse(&name, &text)?),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(BinfmtError::io(&p, e)),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn entry(&self, name: &str) -> Result<Option<Entry>, BinfmtError> {
        let p = self.dir.join(name);
        match read_entry_file(&p) {
            Ok(text) => Entry::parse(name, &text).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BinfmtError::io(&p, e)),
        }
    }

    fn register(&self, reg: &Registration) -> Result<(), BinfmtError> {
        reg.validate()?;
        let p = self.dir.join("register");
        self.write_register(&reg.register_string())
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EEXIST) => BinfmtError::Rejected {
                    name: reg.name.clone(),
                    why: "an entry with this name exists".into(),
                },
                Some(libc::ENOENT) => BinfmtError::Rejected {
                    name: reg.name.clone(),
                    why: format!("interpreter {} not found", reg.interpreter),
                },
                Some(libc::EINVAL) => BinfmtError::Rejected {
                    name: reg.name.clone(),
                    why: "invalid register string".into(),
                },
                _ => BinfmtError::io(&p, e),
            })
    }

    fn remove(&self, name: &str) -> Result<bool, BinfmtError> {
        let p = self.dir.join(name);
        match self.write_file(&p, "-1") {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(BinfmtError::io(&p, e)),
        }
    }

    fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), BinfmtError> {
        let p = self.dir.join(name);
        self.write_file(&p, if enabled { "1" } else { "0" })
            .map_err(|e| BinfmtError::io(&p, e))
    }

    fn lock(&self) -> Result<Lock, BinfmtError> {
        // The directory is per binfmt_misc instance, so is the lock: runs in separate
        // user namespaces never wait for each other.
        let mut f = File::open(&self.dir).map_err(|e| BinfmtError::io(&self.dir, e))?;
        loop {
            match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive) {
                Ok(locked) => {
                    return Ok(Lock {
                        _file: Some(locked),
                    });
                }
                Err((back, nix::Error::EINTR)) => f = back,
                Err((_, e)) => return Err(BinfmtError::io(&self.dir, e.into())),
            }
        }
    }
}

/// An in-memory binfmt_misc for tests of plans and rollback; a registration whose
/// register string contains one of `fail_register` fails as the kernel would refuse it.
#[derive(Default)]
pub struct MemoryBinfmt {
    pub state: Mutex<MemoryState>,
}

#[derive(Default, Debug, Clone)]
pub struct MemoryState {
    pub mounted: bool,
    pub entries: Vec<Entry>,
    pub fail_register: Vec<String>,
    /// Every write, in order, as `register <string>`, `remove <name>`, `enable <name> <0|1>`.
    pub log: Vec<String>,
}

impl MemoryBinfmt {
    pub fn new(entries: Vec<Entry>) -> Self {
        MemoryBinfmt {
            state: Mutex::new(MemoryState {
                mounted: true,
                entries,
                ..Default::default()
            }),
        }
    }

    pub fn snapshot(&self) -> MemoryState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryState) -> T) -> T {
        let mut g = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g)
    }
}

impl BinfmtFs for MemoryBinfmt {
    fn dir(&self) -> &Path {
        Path::new("/memory/binfmt_misc")
    }
    fn is_mounted(&self) -> Result<bool, BinfmtError> {
        Ok(self.with(|s| s.mounted))
    }
    fn mount(&self) -> Result<(), BinfmtError> {
        self.with(|s| s.mounted = true);
        Ok(())
    }
    fn unmount(&self) -> Result<(), BinfmtError> {
        self.with(|s| s.mounted = false);
        Ok(())
    }

    fn status_enabled(&self) -> Result<bool, BinfmtError> {
        Ok(true)
    }
    fn entries(&self) -> Result<Vec<Entry>, BinfmtError> {
        let mut v = self.with(|s| s.entries.clone());
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }
    fn entry(&self, name: &str) -> Result<Option<Entry>, BinfmtError> {
        Ok(self.with(|s| s.entries.iter().find(|e| e.name == name).cloned()))
    }
    fn register(&self, reg: &Registration) -> Result<(), BinfmtError> {
        reg.validate()?;
        self.with(|s| {
            s.log.push(format!("register {}", reg.register_string()));
            let line = reg.register_string();
            if s.fail_register.iter().any(|f| line.contains(f.as_str())) {
                return Err(BinfmtError::Rejected {
                    name: reg.name.clone(),
                    why: "injected failure".into(),
                });
            }
            if s.entries.iter().any(|e| e.name == reg.name) {
                return Err(BinfmtError::Rejected {
                    name: reg.name.clone(),
                    why: "an entry with this name exists".into(),
                });
            }
            s.entries.push(Entry {
                name: reg.name.clone(),
                enabled: true,
                interpreter: reg.interpreter.clone(),
                flags: reg.flags,
                matcher: Matcher::Magic {
                    offset: reg.offset,
                    magic: reg.magic.clone(),
                    mask: Some(reg.mask.clone()),
                },
            });
            Ok(())
        })
    }
    fn remove(&self, name: &str) -> Result<bool, BinfmtError> {
        Ok(self.with(|s| {
            s.log.push(format!("remove {name}"));
            let before = s.entries.len();
            s.entries.retain(|e| e.name != name);
            before != s.entries.len()
        }))
    }
    fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), BinfmtError> {
        self.with(|s| {
            s.log
                .push(format!("enable {name} {}", if enabled { 1 } else { 0 }));
            if let Some(e) = s.entries.iter_mut().find(|e| e.name == name) {
                e.enabled = enabled;
            }
        });
        Ok(())
    }
    fn lock(&self) -> Result<Lock, BinfmtError> {
        Ok(Lock { _file: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL_TEXT: &str = "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    #[test]
    fn parses_kernel_entry() {
        let e = Entry::parse("qemu-aarch64", KERNEL_TEXT).unwrap();
        assert!(e.enabled);
        assert_eq!(e.interpreter, "/usr/bin/qemu-aarch64-static");
        assert_eq!(e.flags.to_string(), "OCF");
        let Matcher::Magic {
            offset,
            magic,
            mask,
        } = &e.matcher
        else {
            panic!("not magic")
        };
        assert_eq!(*offset, 0);
        assert_eq!(magic.len(), 20);
        assert_eq!(mask.as_ref().unwrap()[7], 0);
    }

    #[test]
    fn parses_extension_and_disabled() {
        let e = Entry::parse(
            "python3.11",
            "disabled\ninterpreter /usr/bin/python3.11\nflags: \nextension .pyc\n",
        )
        .unwrap();
        assert!(!e.enabled);
        assert_eq!(e.matcher, Matcher::Extension("pyc".into()));
        assert!(e.to_registration().is_none());
        assert!(Entry::parse("x", "enabled\n").is_err());
        // A flag letter this archctl does not know does not make the entry unreadable.
        let e = Entry::parse(
            "x",
            "enabled\ninterpreter /q\nflags: FZ\noffset 0\nmagic 7f\nmask ff\n",
        )
        .unwrap();
        assert_eq!(e.flags.to_string(), "F");
    }

    #[test]
    fn flags_parse_and_print_in_kernel_order() {
        assert_eq!(Flags::parse("fcp").unwrap().to_string(), "POCF");
        assert_eq!(Flags::parse("C").unwrap().to_string(), "OC");
        assert_eq!(Flags::parse("").unwrap().to_string(), "");
        let e = Flags::parse("FX").unwrap_err().to_string();
        assert!(e.contains("\"FX\"") && e.contains("P, O, C, F"), "{e}");
    }

    #[test]
    fn register_string_round_trips_through_entry() {
        let reg = Registration {
            name: "qemu-aarch64".into(),
            offset: 0,
            magic: b"\x7fELF\x02".to_vec(),
            mask: vec![0xff, 0xff, 0xff, 0xff, 0xfe],
            interpreter: "/usr/bin/qemu-aarch64-static".into(),
            flags: Flags::FIX_BINARY,
        };
        assert_eq!(
            reg.register_string(),
            ":qemu-aarch64:M::\\x7f\\x45\\x4c\\x46\\x02:\\xff\\xff\\xff\\xff\\xfe:/usr/bin/qemu-aarch64-static:F"
        );
        let e = Entry::parse(
            "qemu-aarch64",
            "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: F\noffset 0\nmagic 7f454c4602\nmask fffffffffe\n",
        )
        .unwrap();
        assert!(reg.same_as(&e));
        assert_eq!(e.to_registration().unwrap(), reg);
        // Its length is counted without building it, for every offset and flag set.
        for (offset, flags) in [(0, "F"), (7, ""), (42, "POC"), (255, "POCF")] {
            let r = Registration {
                offset,
                flags: Flags::parse(flags).unwrap(),
                ..reg.clone()
            };
            assert_eq!(r.register_string_len(), r.register_string().len(), "{r:?}");
        }
        let mut other = reg.clone();
        other.interpreter = "/usr/local/bin/qemu-aarch64".into();
        assert!(!other.same_as(&e));
        assert_eq!(other.differences(&e).len(), 1);
    }

    #[test]
    fn registration_rejects_separators() {
        let mut reg = Registration {
            name: "qemu-x".into(),
            offset: 0,
            magic: vec![1],
            mask: vec![0xff],
            interpreter: "/opt/a:b/qemu".into(),
            flags: Flags::FIX_BINARY,
        };
        assert!(reg.validate().unwrap_err().to_string().contains("':'"));
        reg.interpreter = "qemu".into();
        assert!(reg.validate().is_err());
        reg.interpreter = "/q".into();
        reg.name = "register".into();
        assert!(reg.validate().is_err());
    }
}
