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

/// What `archctl doctor FILE` reports of an executable beyond [`ElfInfo`].
#[derive(Debug, Clone, Serialize)]
pub struct ElfFacts {
    #[serde(flatten)]
    pub info: ElfInfo,
    /// `ET_EXEC` or `ET_DYN` (a PIE or a shared object).
    pub elf_type: &'static str,
    /// EI_OSABI: `SYSV` (0, what Linux programs carry), `GNU/Linux` (3), or another.
    pub os_abi: String,
    /// x86-64: the ISA level the GNU property note says the program needs (1 baseline,
    /// 2-4 for x86-64-v2..v4), when the linker recorded it (`-z x86-64-v3`).
    pub x86_isa_needed: Option<u32>,
    /// x86-64: the highest ISA level its code uses, per the same note, when recorded.
    pub x86_isa_used: Option<u32>,
}

/// Notes are read up to this many bytes (a program's notes are a few hundred bytes).
const NOTES_LIMIT: usize = 64 * 1024;
const PT_GNU_PROPERTY: u32 = 0x6474_e553;
const NT_GNU_PROPERTY_TYPE_0: u32 = 5;
const GNU_PROPERTY_X86_ISA_1_USED: u32 = 0xc001_0002;
const GNU_PROPERTY_X86_ISA_1_NEEDED: u32 = 0xc000_8002;

/// The facts of the ELF file at `path` (a regular file only; headers and notes only).
pub fn facts(path: &Path) -> Result<ElfFacts, ElfError> {
    let f = open_regular(path)?;
    let info = ElfInfo::read_file(
        path,
        f.try_clone().map_err(|source| ElfError::Io {
            path: path.to_path_buf(),
            source,
        })?,
    )?;
    let not_elf = |why: String| ElfError::NotElf {
        path: path.to_path_buf(),
        why,
    };
    let mut head = [0u8; 64];
    let n = f.read_at(&mut head, 0).map_err(|source| ElfError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let h = Elf::parse_header(&head[..n]).map_err(|e| not_elf(e.to_string()))?;
    let ctx = Ctx::new(
        h.container().map_err(|e| not_elf(e.to_string()))?,
        h.endianness().map_err(|e| not_elf(e.to_string()))?,
    );
    let read_at = |off: u64, len: usize| -> io::Result<Vec<u8>> {
        let mut b = vec![0u8; len];
        f.read_exact_at(&mut b, off)?;
        Ok(b)
    };
    let count = usize::from(h.e_phnum);
    let ph_bytes = read_at(h.e_phoff, count * usize::from(h.e_phentsize))
        .map_err(|e| not_elf(format!("program headers: {e}")))?;
    let phdrs = program_header::ProgramHeader::parse(&ph_bytes, 0, count, ctx)
        .map_err(|e| not_elf(format!("program headers: {e}")))?;
    let (mut needed, mut used) = (None, None);
    if h.e_machine == header::EM_X86_64 || h.e_machine == header::EM_386 {
        // PT_GNU_PROPERTY when the linker wrote one, else every PT_NOTE.
        let props: Vec<_> = phdrs
            .iter()
            .filter(|p| p.p_type == PT_GNU_PROPERTY)
            .collect();
        let segs: Vec<_> = if props.is_empty() {
            phdrs
                .iter()
                .filter(|p| p.p_type == program_header::PT_NOTE)
                .collect()
        } else {
            props
        };
        for p in segs {
            let len = usize::try_from(p.p_filesz)
                .unwrap_or(usize::MAX)
                .min(NOTES_LIMIT);
            let Ok(bytes) = read_at(p.p_offset, len) else {
                continue;
            };
            let (n, u) = x86_isa_levels(&bytes, ctx.le.is_little(), info.bits == 64);
            needed = needed.or(n);
            used = used.or(u);
        }
    }
    Ok(ElfFacts {
        info,
        elf_type: if h.e_type == header::ET_EXEC {
            "ET_EXEC"
        } else {
            "ET_DYN"
        },
        os_abi: match h.e_ident[header::EI_OSABI] {
            0 => "SYSV".into(),
            3 => "GNU/Linux".into(),
            9 => "FreeBSD".into(),
            other => format!("OS/ABI {other}"),
        },
        x86_isa_needed: needed,
        x86_isa_used: used,
    })
}

/// The x86 ISA levels (needed, used) in a note segment's GNU property notes: the
/// highest level bit of each bitmask (baseline = 1, v2 = 2, v3 = 3, v4 = 4).
pub fn x86_isa_levels(notes: &[u8], little: bool, elf64: bool) -> (Option<u32>, Option<u32>) {
    let u32_at = |b: &[u8], i: usize| -> Option<u32> {
        let w: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        })
    };
    let align = |x: usize, a: usize| x.div_ceil(a) * a;
    let prop_align = if elf64 { 8 } else { 4 };
    let level = |mask: u32| {
        (mask != 0)
            .then(|| 32 - (mask & 0xf).leading_zeros())
            .filter(|l| *l > 0)
    };
    let (mut needed, mut used) = (None, None);
    let mut i = 0;
    while let (Some(namesz), Some(descsz), Some(kind)) =
        (u32_at(notes, i), u32_at(notes, i + 4), u32_at(notes, i + 8))
    {
        let (namesz, descsz) = (namesz as usize, descsz as usize);
        let name_start = i + 12;
        let desc_start = name_start + align(namesz, 4);
        let Some(desc) = notes.get(desc_start..desc_start.saturating_add(descsz)) else {
            break;
        };
        if kind == NT_GNU_PROPERTY_TYPE_0
            && notes.get(name_start..name_start + namesz) == Some(b"GNU\0")
        {
            let mut j = 0;
            while let (Some(pr_type), Some(datasz)) = (u32_at(desc, j), u32_at(desc, j + 4)) {
                let data = j + 8;
                if datasz >= 4 {
                    let v = u32_at(desc, data);
                    match pr_type {
                        GNU_PROPERTY_X86_ISA_1_NEEDED => needed = v.and_then(level),
                        GNU_PROPERTY_X86_ISA_1_USED => used = v.and_then(level),
                        _ => {}
                    }
                }
                j = align(data + datasz as usize, prop_align);
            }
        }
        i = align(desc_start + descsz, 4);
    }
    (needed, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_x86_isa_levels_of_a_gnu_property_note() {
        // One NT_GNU_PROPERTY_TYPE_0 note, 64-bit: ISA_1_NEEDED = v3 (baseline|v2|v3),
        // ISA_1_USED = v2.
        let mut n = Vec::new();
        n.extend(4u32.to_le_bytes());
        n.extend(32u32.to_le_bytes());
        n.extend(5u32.to_le_bytes());
        n.extend(b"GNU\0");
        for (t, v) in [(0xc000_8002u32, 0b111u32), (0xc001_0002, 0b11)] {
            n.extend(t.to_le_bytes());
            n.extend(4u32.to_le_bytes());
            n.extend(v.to_le_bytes());
            n.extend([0u8; 4]);
        }
        assert_eq!(x86_isa_levels(&n, true, true), (Some(3), Some(2)));
        // Truncated or empty: nothing, no panic.
        assert_eq!(x86_isa_levels(&n[..20], true, true), (None, None));
        assert_eq!(x86_isa_levels(&[], true, true), (None, None));
    }

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
