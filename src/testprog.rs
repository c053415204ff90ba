//! The per-architecture test programs from `test-images/`, embedded in the binary.
//! Each is a tiny static ELF that writes `archctl-test <target> ok` and exits 0.

mod generated {
    include!(concat!(env!("OUT_DIR"), "/testprogs.rs"));
}

/// One embedded test program.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    /// QEMU target name.
    pub arch: &'static str,
    pub bytes: &'static [u8],
}

impl Program {
    /// The exact line the program prints.
    pub fn expected_output(&self) -> String {
        expected_output(self.arch)
    }
}

pub fn expected_output(arch: &str) -> String {
    format!("archctl-test {arch} ok\n")
}

/// The test program for a QEMU target, if archctl ships one.
pub fn program(arch: &str) -> Option<Program> {
    generated::PROGRAMS
        .iter()
        .find(|(name, _)| *name == arch)
        .map(|(arch, bytes)| Program { arch, bytes })
}

/// Every embedded program, sorted by target name.
pub fn all() -> impl Iterator<Item = Program> {
    generated::PROGRAMS
        .iter()
        .map(|(arch, bytes)| Program { arch, bytes })
}
