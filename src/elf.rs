//! Checks on ELF files with goblin: machine, class, endianness, static or not. Only the
//! ELF header and program headers are read, never the whole file (emulators are MBs).

use std::{
    io::{self, Read},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use goblin::{
    container::{Container, Ctx},
    elf::{Elf, header, program_header},
};
use serde::Serialize;

use crate::fsutil::{OpenError, open_regular};

/// Bytes kept from the start of the file: enough for every binfmt magic.
pub const HEADER_BYTES: usize = 128;
/// Bytes read at once from the start of a file: the program headers of an executable
/// follow the ELF header and almost always fit, so one read(2) usually does it all.
const FIRST_READ: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not an ELF executable: {why}")]
    NotElf { path: PathBuf, why: String },
    /// A FIFO, device, socket or directory: never opened in a way that could block.
    #[error("{}: is {what}, not a regular file", path.display())]
    NotRegular { path: PathBuf, what: &'static str },
}

impl From<OpenError> for ElfError {
    fn from(e: OpenError) -> ElfError {
        match e {
            OpenError::Io { path, source } => ElfError::Io { path, source },
            OpenError::NotRegular { path, what } => ElfError::NotRegular { path, what },
            // open_regular never says this; kept an I/O error rather than a panic.
            OpenError::TooLarge { path, .. } => ElfError::Io {
                path,
                source: io::Error::other("too large"),
            },
        }
    }
}

/// What archctl needs to know about an ELF file.
#[derive(Debug, Clone, Serialize)]
pub struct ElfInfo {
    #[serde(skip)]
    pub header: Vec<u8>,
    /// e_machine name as goblin spells it (`X86_64`, `AARCH64`...).
    pub machine: String,
    pub bits: u8,
    pub little_endian: bool,
    /// PT_INTERP, when the file is dynamically linked.
    pub interpreter: Option<String>,
}

impl ElfInfo {
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none()
    }

    /// Parse from the start of a file (`data` must hold at least the ELF header).
    pub fn parse(
        data: &[u8],
        read_at: impl Fn(u64, usize) -> io::Result<Vec<u8>>,
    ) -> Result<ElfInfo, String> {
        let h = Elf::parse_header(data).map_err(|e| e.to_string())?;
        let container = h.container().map_err(|e| e.to_string())?;
        let endian = h.endianness().map_err(|e| e.to_string())?;
        if h.e_type != header::ET_EXEC && h.e_type != header::ET_DYN {
            return Err(format!("ELF type {} is not an executable", h.e_type));
        }
        let ctx = Ctx::new(container, endian);
        let count = usize::from(h.e_phnum);
        let size = count * usize::from(h.e_phentsize);
        if size > 64 * 1024 {
            return Err(format!("{count} program headers"));
        }
        let ph_bytes = read_at(h.e_phoff, size).map_err(|e| format!("program headers: {e}"))?;
        let phdrs = program_header::ProgramHeader::parse(&ph_bytes, 0, count, ctx)
            .map_err(|e| format!("program headers: {e}"))?;
        let mut interpreter = None;
        for ph in &phdrs {
            if ph.p_type == program_header::PT_INTERP {
                let len = usize::try_from(ph.p_filesz).unwrap_or(usize::MAX).min(4096);
                let raw = read_at(ph.p_offset, len).map_err(|e| format!("PT_INTERP: {e}"))?;
                let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                interpreter = Some(String::from_utf8_lossy(&raw[..end]).into_owned());
            }
        }
        Ok(ElfInfo {
            header: data[..data.len().min(HEADER_BYTES)].to_vec(),
            machine: header::machine_to_str(h.e_machine).to_string(),
            bits: if container == Container::Big { 64 } else { 32 },
            little_endian: endian.is_little(),
            interpreter,
        })
    }

    /// Read and parse a file's headers. Only a regular file is read ([`open_regular`]:
    /// a FIFO or a device is an error, never a hang), and only its headers: at most
    /// 4 KiB from the start, 64 KiB of program headers and 4 KiB of PT_INTERP.
    pub fn read(path: &Path) -> Result<ElfInfo, ElfError> {
        Self::read_file(path, open_regular(path)?)
    }

    /// [`ElfInfo::read`] for a path in a system directory only root can write (the
    /// emulator search's default places): what the descriptor is still decides (a FIFO
    /// or a device is an error), but no stat(2) comes first. This is on the boot path,
    /// once per emulator; the early stat only keeps a device whose open acts from being
    /// opened, and only root can put one in those directories.
    pub fn read_in_system_dir(path: &Path) -> Result<ElfInfo, ElfError> {
        Self::read_file(path, crate::fsutil::open_checked(path)?)
    }

    fn read_file(path: &Path, mut f: std::fs::File) -> Result<ElfInfo, ElfError> {
        let io_err = |source| ElfError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut buf = [0u8; FIRST_READ];
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        let head = &buf[..n];
        if n < 4 || &head[..4] != b"\x7fELF" {
            return Err(ElfError::NotElf {
                path: path.to_path_buf(),
                why: "no ELF magic".into(),
            });
        }
        ElfInfo::parse(head, |off, len| {
            let start = usize::try_from(off).unwrap_or(usize::MAX);
            if let Some(b) = head.get(start..start.saturating_add(len)) {
                return Ok(b.to_vec());
            }
            let mut buf = vec![0u8; len];
            f.read_exact_at(&mut buf, off)?;
            Ok(buf)
        })
        .map_err(|why| ElfError::NotElf {
            path: path.to_path_buf(),
            why,
        })
    }

    /// Parse an in-memory ELF image.
    pub fn from_bytes(bytes: &[u8]) -> Result<ElfInfo, String> {
        ElfInfo::parse(bytes, |off, len| {
            let start = usize::try_from(off).map_err(io::Error::other)?;
            bytes
                .get(start..start.saturating_add(len))
                .map(<[u8]>::to_vec)
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
        })
    }

    /// "64-bit little-endian X86_64", for messages.
    pub fn describe(&self) -> String {
        format!(
            "{}-bit {}-endian {}{}",
            self.bits,
            if self.little_endian { "little" } else { "big" },
            self.machine,
            match &self.interpreter {
                Some(i) => format!(", dynamically linked ({i})"),
                None => ", static".into(),
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_test_programs_as_static() {
        for p in crate::testprog::all() {
            let info = ElfInfo::from_bytes(p.bytes).unwrap_or_else(|e| panic!("{}: {e}", p.arch));
            assert!(info.is_static(), "{}: {}", p.arch, info.describe());
        }
    }

    #[test]
    fn reads_a_dynamic_binary_and_rejects_non_elf() {
        // /bin/sh is a dynamic program on most systems (CI's included), but not on a
        // busybox-only one (boot2docker, some guests): there the check is skipped.
        let sh = ElfInfo::read(Path::new("/bin/sh")).unwrap();
        if sh.is_static() && std::env::var_os("CI").is_none() {
            eprintln!(
                "skipped the dynamic-binary check: /bin/sh is {}",
                sh.describe()
            );
        } else {
            assert!(!sh.is_static(), "{}", sh.describe());
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("script");
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        assert!(matches!(ElfInfo::read(&p), Err(ElfError::NotElf { .. })));
        assert!(matches!(
            ElfInfo::read(&dir.path().join("missing")),
            Err(ElfError::Io { .. })
        ));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for p in [fifo.as_path(), Path::new("/dev/zero"), dir.path()] {
            assert!(
                matches!(ElfInfo::read(p), Err(ElfError::NotRegular { .. })),
                "{}",
                p.display()
            );
        }
    }
}
