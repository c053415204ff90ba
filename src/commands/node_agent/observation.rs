//! The node agent's view of one check: from what `boot` did and what the test programs
//! proved, the Node labels it should carry, what was repaired, and whether it is ready.
//! Pure: the command (the parent module) runs boot and the tests, and patches the Node.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::kubernetes::labels;
use crate::{
    arch::Table,
    plan::Action,
    report::{BootReport, TestReport},
};

/// One check of the node: what it serves and how.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Observation {
    /// Architectures the node runs without emulation (archctl names: `x86_64`, `arm`).
    pub native: Vec<String>,
    /// Architectures whose entry ran the test program: name → interpreter.
    pub proven: BTreeMap<String, String>,
    /// Architectures the configuration asks for that are not proven: name → why.
    pub unproven: BTreeMap<String, String>,
    /// Entries this check had to register, replace or switch on (after the first check:
    /// entries lost, e.g. to a `systemd-binfmt` restart).
    pub repaired: Vec<String>,
}

impl Observation {
    /// From `boot`'s report (what it registered, what is native, what it could not serve)
    /// and the test of the architectures it serves.
    pub fn from_reports(boot: &BootReport, test: Option<&TestReport>) -> Observation {
        let mut o = Observation::default();
        let mut served = BTreeMap::new();
        for e in &boot.result.entries {
            match e.action {
                Action::SkippedNative => o.native.push(e.arch.clone()),
                Action::Registered | Action::Replaced | Action::Enabled => {
                    o.repaired.push(e.arch.clone());
                    served.insert(e.arch.clone(), e.interpreter.clone().unwrap_or_default());
                }
                Action::Unchanged => {
                    served.insert(e.arch.clone(), e.interpreter.clone().unwrap_or_default());
                }
                _ => {}
            }
        }
        for arch in &boot.result.unserved {
            let why = boot
                .result
                .entries
                .iter()
                .find(|e| &e.arch == arch)
                .and_then(|e| e.note.clone())
                .unwrap_or_else(|| "left without a working handler".into());
            o.unproven.insert(arch.clone(), why);
        }
        for (arch, interpreter) in served {
            let result = test.and_then(|t| t.results.iter().find(|r| r.arch == arch));
            match result {
                Some(r) if r.ok => {
                    o.proven.insert(arch, interpreter);
                }
                Some(r) => {
                    let why = r
                        .error
                        .clone()
                        .unwrap_or_else(|| "its test program failed".into());
                    o.unproven.insert(arch, why);
                }
                None => {
                    o.unproven.insert(arch, "not tested".into());
                }
            }
        }
        o
    }

    /// Ready: every configured entry proven.
    pub fn ready(&self) -> bool {
        self.unproven.is_empty()
    }

    /// The archctl-owned labels the Node should carry: `native.archctl.io/linux-<arch>`
    /// for what it runs natively, `emulation.archctl.io/linux-<arch>` for what a proven
    /// entry runs. An architecture that is native is never labelled emulated.
    pub fn labels(&self, table: &Table) -> BTreeMap<String, String> {
        let platform = |arch: &str| {
            table
                .get(arch)
                .and_then(|r| labels::rule_platform(&r.platforms))
        };
        let mut out = BTreeMap::new();
        let mut native = BTreeSet::new();
        for arch in &self.native {
            if let Some((os, a)) = platform(arch) {
                out.insert(labels::native_key(&os, &a), "true".to_string());
                native.insert((os, a));
            }
        }
        for (arch, interpreter) in &self.proven {
            if let Some((os, a)) = platform(arch)
                && !native.contains(&(os.clone(), a.clone()))
            {
                out.insert(
                    labels::emulation_key(&os, &a),
                    labels::emulator_value(interpreter).to_string(),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        report::{ChangeReport, EntryReport},
        verify::TestResult,
    };

    fn entry(arch: &str, action: Action, interpreter: &str) -> EntryReport {
        EntryReport {
            arch: arch.into(),
            name: format!("qemu-{arch}"),
            action,
            interpreter: Some(interpreter.into()),
            flags: Some("F".into()),
            verified: None,
            equivalent: None,
            note: None,
            register: None,
        }
    }

    fn boot(entries: Vec<EntryReport>, unserved: Vec<&str>) -> BootReport {
        BootReport {
            config: "/etc/archctl/config.toml".into(),
            config_found: true,
            elapsed_ms: 1.0,
            summary: String::new(),
            result: ChangeReport {
                host: "x86_64".into(),
                binfmt_dir: "/proc/sys/fs/binfmt_misc".into(),
                dry_run: false,
                mounted: false,
                entries,
                warnings: vec![],
                unserved: unserved.into_iter().map(String::from).collect(),
                error: None,
            },
        }
    }

    fn result(arch: &str, ok: bool) -> TestResult {
        TestResult {
            arch: arch.into(),
            ok,
            mode: crate::verify::Mode::Emulated,
            handlers: vec![],
            time_ms: 1.0,
            output: String::new(),
            error: (!ok).then(|| "exec format error".into()),
        }
    }

    #[test]
    fn labels_native_and_proven_only() {
        let b = boot(
            vec![
                entry("x86_64", Action::SkippedNative, ""),
                entry("i386", Action::SkippedNative, ""),
                entry(
                    "aarch64",
                    Action::Registered,
                    "/usr/bin/qemu-aarch64-static",
                ),
                entry("arm", Action::Unchanged, "/usr/bin/qemu-arm-static"),
                entry("riscv64", Action::Unchanged, "/usr/bin/qemu-riscv64-static"),
                entry("s390x", Action::SkippedMissing, ""),
            ],
            vec![],
        );
        let t = TestReport {
            host: "x86_64".into(),
            results: vec![
                result("aarch64", true),
                result("arm", true),
                result("riscv64", false),
            ],
        };
        let o = Observation::from_reports(&b, Some(&t));
        assert_eq!(o.repaired, vec!["aarch64"]);
        assert!(!o.ready());
        assert!(o.unproven["riscv64"].contains("exec format error"));
        let l = o.labels(Table::builtin());
        let want: BTreeMap<String, String> = [
            ("native.archctl.io/linux-amd64", "true"),
            ("native.archctl.io/linux-386", "true"),
            ("emulation.archctl.io/linux-arm64", "qemu"),
            ("emulation.archctl.io/linux-arm", "qemu"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(l, want);
        for k in l.keys() {
            assert!(labels::valid_key(k), "{k}");
        }
    }

    #[test]
    fn unserved_and_untested_are_not_ready() {
        let b = boot(
            vec![entry("aarch64", Action::SkippedConflict, "/x")],
            vec!["aarch64"],
        );
        let o = Observation::from_reports(&b, None);
        assert!(!o.ready());
        assert!(o.labels(Table::builtin()).is_empty());
        let b = boot(vec![entry("aarch64", Action::Unchanged, "/x")], vec![]);
        let o = Observation::from_reports(&b, None);
        assert_eq!(o.unproven["aarch64"], "not tested");
    }

    #[test]
    fn rosetta_value_and_native_wins() {
        let b = boot(
            vec![
                entry("aarch64", Action::SkippedNative, ""),
                entry("x86_64", Action::Unchanged, "/mnt/lima-rosetta/rosetta"),
            ],
            vec![],
        );
        let t = TestReport {
            host: "aarch64".into(),
            results: vec![result("x86_64", true)],
        };
        let o = Observation::from_reports(&b, Some(&t));
        assert!(o.ready());
        let l = o.labels(Table::builtin());
        assert_eq!(l["emulation.archctl.io/linux-amd64"], "rosetta");
        assert_eq!(l["native.archctl.io/linux-arm64"], "true");
    }
}
