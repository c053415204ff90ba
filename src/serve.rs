//! Whether an entry already in the table *serves* an architecture as archctl's own entry
//! would, so that `enable` and `boot` leave it alone (reported `unchanged`, with why)
//! instead of calling it a conflict. All three must hold:
//!
//! - **Magic and mask** select that architecture's binaries: its test program (or the
//!   same with one of the rule's legacy e_machine values) matches, and no other
//!   architecture's does ([`crate::arch::Table::selected_by`]).
//! - **Interpreter**: the file archctl would register (the same device and inode after
//!   symlinks, or the same content), or, when its path is not visible in this mount
//!   namespace, an `F` entry (the kernel holds the file open, as after a registration
//!   from inside a container) whose test program runs. A visible file of another build
//!   must also run the test program, and be a static ELF for this host.
//! - **Flags** include `F`; extra `P`/`O` are reported, `C` with the warning of `--flags C`.
//!
//! Proof by execution is not done here (this module only reads files): an assessment
//! that needs it says so ([`Serves::needs_proof`]) and the caller runs the test
//! programs, all at once.

use std::{
    fs::File,
    io::{self, Read},
    os::unix::fs::MetadataExt,
    path::Path,
};

use crate::{
    arch::{Rule, Table},
    binfmt::{Entry, Matcher},
    elf::ElfInfo,
    host::Native,
};

/// How an entry's interpreter relates to the emulator archctl would register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interpreter {
    /// The same file: the path itself, or one resolving (symlinks) to the same inode,
    /// or a file with the same content.
    Same { how: String },
    /// The path does not exist in this mount namespace; with `F` the kernel opened it
    /// at registration (in a container's root) and runs it anyway.
    Invisible,
    /// Visible, another static emulator build for this host.
    Other,
}

/// An entry that serves an architecture, and what to say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serves {
    pub interpreter: Interpreter,
    /// The human note, e.g. `equivalent: interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
    /// -> /usr/bin/qemu-aarch64-static, flags POF`.
    pub why: String,
    /// Warnings for the plan (flag C).
    pub warnings: Vec<String>,
}

impl Serves {
    /// Only a test run can tell whether the interpreter works.
    pub fn needs_proof(&self) -> bool {
        !matches!(self.interpreter, Interpreter::Same { .. })
    }
}

/// Does `entry` serve `rule`? `wanted` is the interpreter archctl would register, when
/// it has found one. Err says why not, for the conflict message.
pub fn assess(
    table: &Table,
    native: &Native,
    rule: &Rule,
    entry: &Entry,
    wanted: Option<&str>,
) -> Result<Serves, String> {
    if !entry.enabled {
        return Err("disabled".into());
    }
    // archctl's own magic and mask select exactly this rule (the build checks the
    // table's cross-match); anything else is matched against every rule's programs.
    let own = matches!(&entry.matcher, m if m.equivalent(rule.offset, &rule.magic, &rule.mask));
    let selected = if own {
        vec![rule]
    } else {
        selected_rules(table, &entry.matcher)
    };
    match selected.as_slice() {
        [only] if only.name == rule.name => {}
        [] => return Err("magic/mask (it catches no architecture's programs)".into()),
        [only] => return Err(format!("magic/mask (it catches {} programs)", only.name)),
        many => {
            let names: Vec<&str> = many.iter().map(|r| r.name.as_str()).collect();
            return Err(format!(
                "magic/mask (it catches the programs of {})",
                names.join(", ")
            ));
        }
    }
    if !entry.flags.fix_binary {
        return Err(format!(
            "flags \"{}\" without F (containers and chroots cannot find the interpreter)",
            entry.flags
        ));
    }
    let interpreter = interpreter(table, native, &entry.interpreter, wanted)?;
    let mut why = format!("equivalent: interpreter {}", entry.interpreter);
    match &interpreter {
        Interpreter::Same { how } => why.push_str(how),
        Interpreter::Invisible => {
            why.push_str(" (not visible here: held open by the kernel, runs the test program)")
        }
        Interpreter::Other => why.push_str(" (another static build, runs the test program)"),
    }
    why.push_str(&format!(", flags {}", entry.flags));
    let mut warnings = Vec::new();
    if entry.flags.credentials {
        warnings.push(format!(
            "{}: flag C: setuid programs run through qemu with raised privileges, and qemu-user does not sanitise its QEMU_* environment for them; use only on trusted systems",
            entry.name
        ));
    }
    Ok(Serves {
        interpreter,
        why,
        warnings,
    })
}

/// The rules whose programs a matcher catches (see [`Table::selected_by`]).
pub fn selected_rules<'t>(table: &'t Table, matcher: &Matcher) -> Vec<&'t Rule> {
    match matcher {
        Matcher::Magic {
            offset,
            magic,
            mask,
        } => {
            let full;
            let mask = match mask {
                Some(m) => m.as_slice(),
                None => {
                    full = vec![0xff; magic.len()];
                    &full
                }
            };
            table.selected_by(*offset, magic, mask)
        }
        Matcher::Extension(_) => Vec::new(),
    }
}

fn interpreter(
    table: &Table,
    native: &Native,
    path: &str,
    wanted: Option<&str>,
) -> Result<Interpreter, String> {
    if wanted == Some(path) {
        return Ok(Interpreter::Same { how: String::new() });
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if is_absent(&e) => return Ok(Interpreter::Invisible),
        Err(e) => return Err(format!("interpreter {path}: {e}")),
    };
    if let Some(w) = wanted
        && let Ok(wm) = std::fs::metadata(w)
    {
        if (meta.dev(), meta.ino()) == (wm.dev(), wm.ino()) {
            return Ok(Interpreter::Same {
                how: format!(" -> {w}"),
            });
        }
        if meta.len() == wm.len() && same_content(Path::new(path), Path::new(w)).unwrap_or(false) {
            return Ok(Interpreter::Same {
                how: format!(" (same content as {w})"),
            });
        }
    }
    // Another file: it must at least be a static emulator for this host.
    match crate::emulator::check(Path::new(path), table, native, true) {
        Ok(_) => Ok(Interpreter::Other),
        Err(e) => Err(e.to_string()),
    }
}

fn is_absent(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

/// Byte for byte, in chunks (both files are regular files of equal length).
fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let open = |p: &Path| -> io::Result<File> {
        crate::fsutil::open_regular(p).map_err(|e| io::Error::other(e.to_string()))
    };
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The interpreter of an entry, for `status`: Ok(true) visible and a static ELF for this
/// host, Ok(false) not visible in this mount namespace, Err the problem.
pub fn interpreter_health(table: &Table, native: &Native, path: &str) -> Result<bool, String> {
    match ElfInfo::read(Path::new(path)) {
        Err(crate::elf::ElfError::Io { source, .. }) if is_absent(&source) => Ok(false),
        Err(err) => Err(err.to_string()),
        Ok(info) if !native.runs(table, &info.header) => {
            Err(format!("{} is not for this host", info.describe()))
        }
        Ok(info) if !info.is_static() => Err(format!(
            "dynamically linked ({}): fails inside containers",
            info.interpreter.unwrap_or_default()
        )),
        Ok(_) => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binfmt::Flags;

    fn entry(rule: &Rule, interpreter: &str, flags: &str) -> Entry {
        Entry {
            name: rule.entry_name(),
            enabled: true,
            interpreter: interpreter.into(),
            flags: Flags::parse(flags).unwrap(),
            matcher: Matcher::Magic {
                offset: rule.offset,
                magic: rule.magic.clone(),
                mask: Some(rule.mask.clone()),
            },
        }
    }

    fn host_native() -> Native {
        let t = Table::builtin();
        Native::host_only(&crate::host::Host::detect(t))
    }

    #[test]
    fn same_path_and_symlink_are_the_same_interpreter() {
        let t = Table::builtin();
        let rule = t.get("s390x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let real = std::env::current_exe().unwrap();
        let link = dir.path().join("s390x-binfmt-P");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let real = real.to_str().unwrap();
        let native = host_native();
        let s = assess(t, &native, rule, &entry(rule, real, "F"), Some(real)).unwrap();
        assert!(!s.needs_proof());
        let e = entry(rule, link.to_str().unwrap(), "POF");
        let s = assess(t, &native, rule, &e, Some(real)).unwrap();
        assert_eq!(
            s.interpreter,
            Interpreter::Same {
                how: format!(" -> {real}")
            }
        );
        assert!(s.why.contains("flags POF"), "{}", s.why);
        // A copy: same content.
        let copy = dir.path().join("copy");
        std::fs::copy(real, &copy).unwrap();
        let e = entry(rule, copy.to_str().unwrap(), "F");
        let s = assess(t, &native, rule, &e, Some(real)).unwrap();
        assert!(s.why.contains("same content"), "{}", s.why);
    }

    #[test]
    fn invisible_needs_proof_and_f_is_required() {
        let t = Table::builtin();
        let rule = t.get("riscv64").unwrap();
        let native = host_native();
        let e = entry(rule, "/nonexistent/qemu-riscv64", "OCF");
        let s = assess(t, &native, rule, &e, Some("/usr/bin/qemu-riscv64-static")).unwrap();
        assert_eq!(s.interpreter, Interpreter::Invisible);
        assert!(s.needs_proof());
        assert_eq!(s.warnings.len(), 1, "C is warned about");
        let e = entry(rule, "/nonexistent/qemu-riscv64", "P");
        let why = assess(t, &native, rule, &e, None).unwrap_err();
        assert!(why.contains("without F"), "{why}");
        let mut e = entry(rule, "/nonexistent/qemu-riscv64", "F");
        e.enabled = false;
        assert_eq!(assess(t, &native, rule, &e, None).unwrap_err(), "disabled");
    }

    #[test]
    fn magic_must_select_exactly_this_architecture() {
        let t = Table::builtin();
        let rule = t.get("ppc64").unwrap();
        let native = host_native();
        // ppc64le's magic under ppc64's name.
        let other = t.get("ppc64le").unwrap();
        let mut e = entry(other, "/nonexistent", "F");
        e.name = rule.entry_name();
        let why = assess(t, &native, rule, &e, None).unwrap_err();
        assert!(why.contains("ppc64le programs"), "{why}");
        // A mask so wide it catches every 64-bit big-endian ELF.
        let mut e = entry(rule, "/nonexistent", "F");
        e.matcher = Matcher::Magic {
            offset: 0,
            magic: b"\x7fELF\x02\x02".to_vec(),
            mask: None,
        };
        let why = assess(t, &native, rule, &e, None).unwrap_err();
        assert!(why.contains("programs of"), "{why}");
    }

    #[test]
    fn legacy_microblaze_machine_is_recognised() {
        let t = Table::builtin();
        // Debian's (QEMU 7.2's) entry: e_machine 0xbaab.
        let m = Matcher::Magic {
            offset: 0,
            magic: b"\x7fELF\x01\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\xba\xab"
                .to_vec(),
            mask: Some(
                b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"
                    .to_vec(),
            ),
        };
        let names: Vec<&str> = selected_rules(t, &m)
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["microblaze"]);
    }
}
