//! The Node labels the agent writes and the webhook reads. One label per platform:
//!
//! - `native.archctl.io/<os>-<arch>=true`: the node runs it without emulation (its own
//!   architecture, and for example AArch32 on an arm64 node that has it);
//! - `emulation.archctl.io/<os>-<arch>=<emulator>`: a binfmt_misc entry that the agent
//!   proved (by running the architecture's test program) runs it; the value is `qemu`,
//!   or `rosetta` for Apple's Rosetta.
//!
//! `<arch>` is the OCI/GOARCH name (`amd64`, `arm64`, `arm`, `386`, `ppc64le`, ...),
//! the same word as the node's `kubernetes.io/arch`; variants are not in the key (nodes
//! do not label them either). Keys stay within Kubernetes' label syntax: a DNS
//! subdomain prefix, then a name of at most 63 characters of `[A-Za-z0-9._-]`, starting
//! and ending alphanumeric; values likewise.

use std::collections::BTreeMap;

/// Every key the agent owns starts with one of these (and only those keys are removed).
pub const NATIVE_PREFIX: &str = "native.archctl.io/";
pub const EMULATION_PREFIX: &str = "emulation.archctl.io/";
/// The label Kubernetes itself sets from the kubelet's GOARCH.
pub const ARCH_LABEL: &str = "kubernetes.io/arch";
/// The older spelling, still honoured as a constraint when a pod uses it.
pub const BETA_ARCH_LABEL: &str = "beta.kubernetes.io/arch";

/// `linux-amd64` for os `linux` and architecture `amd64`.
pub fn platform_name(os: &str, arch: &str) -> String {
    format!("{os}-{arch}")
}

/// `native.archctl.io/linux-arm`.
pub fn native_key(os: &str, arch: &str) -> String {
    format!("{NATIVE_PREFIX}{}", platform_name(os, arch))
}

/// `emulation.archctl.io/linux-amd64`.
pub fn emulation_key(os: &str, arch: &str) -> String {
    format!("{EMULATION_PREFIX}{}", platform_name(os, arch))
}

/// Whether a Node label key is one the agent owns.
pub fn is_ours(key: &str) -> bool {
    key.starts_with(NATIVE_PREFIX) || key.starts_with(EMULATION_PREFIX)
}

/// The emulator word of an `emulation.archctl.io/` value, from the interpreter path.
pub fn emulator_value(interpreter: &str) -> &'static str {
    let base = interpreter.rsplit('/').next().unwrap_or(interpreter);
    if base.to_ascii_lowercase().contains("rosetta") {
        "rosetta"
    } else {
        "qemu"
    }
}

/// The `(os, arch)` of an archctl rule's platforms that a Node label names: the first
/// platform's os and architecture (`linux/arm/v7` gives `("linux", "arm")`).
pub fn rule_platform(platforms: &[String]) -> Option<(String, String)> {
    let p = platforms.first()?;
    let mut parts = p.split('/');
    Some((parts.next()?.to_string(), parts.next()?.to_string()))
}

/// Kubernetes' label syntax: `[prefix/]name`, the name 1-63 characters of
/// `[A-Za-z0-9._-]` beginning and ending alphanumeric, the prefix a DNS subdomain of at
/// most 253 characters.
pub fn valid_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && (p.is_empty()
            || p.len() > 253
            || !p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            }))
    {
        return false;
    }
    !name.is_empty() && valid_value(name)
}

/// A label value: empty, or 1-63 characters as a key's name.
pub fn valid_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && v.as_bytes()[0].is_ascii_alphanumeric()
            && v.as_bytes()[v.len() - 1].is_ascii_alphanumeric())
}

/// The JSON merge patch of `metadata.labels` that takes a Node from `current` labels to
/// carrying exactly `desired` among archctl's own (others untouched); `None` when
/// nothing changes.
pub fn label_patch(
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> Option<serde_json::Value> {
    let mut patch = serde_json::Map::new();
    for (k, v) in desired {
        if current.get(k) != Some(v) {
            patch.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
    }
    for k in current.keys() {
        if is_ours(k) && !desired.contains_key(k) {
            patch.insert(k.clone(), serde_json::Value::Null);
        }
    }
    if patch.is_empty() {
        None
    } else {
        Some(serde_json::json!({ "metadata": { "labels": patch } }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Table;

    #[test]
    fn every_rule_gives_valid_keys() {
        let mut n = 0;
        for r in Table::builtin().rules() {
            if let Some((os, arch)) = rule_platform(&r.platforms) {
                for k in [native_key(&os, &arch), emulation_key(&os, &arch)] {
                    assert!(valid_key(&k), "{k}");
                }
                n += 1;
            }
        }
        assert!(n >= 10, "only {n} rules have platforms");
        for v in ["qemu", "rosetta", "true"] {
            assert!(valid_value(v));
        }
    }

    #[test]
    fn syntax() {
        assert!(valid_key("emulation.archctl.io/linux-amd64"));
        assert!(!valid_key("emulation.archctl.io/linux/amd64"));
        assert!(!valid_key("Emulation.archctl.io/x"));
        assert!(!valid_key("a/-x"));
        assert!(!valid_key(&format!("a/{}", "x".repeat(64))));
        assert!(!valid_value("-a"));
        assert!(valid_value(""));
        assert_eq!(
            rule_platform(&["linux/arm/v7".into()]),
            Some(("linux".into(), "arm".into()))
        );
        assert_eq!(emulator_value("/usr/bin/qemu-x86_64-static"), "qemu");
        assert_eq!(emulator_value("/mnt/lima-rosetta/rosetta"), "rosetta");
        assert!(is_ours("native.archctl.io/linux-arm"));
        assert!(!is_ours("kubernetes.io/arch"));
    }

    #[test]
    fn patch_sets_changes_and_removes_only_ours() {
        let cur: BTreeMap<String, String> = [
            ("kubernetes.io/arch", "arm64"),
            ("emulation.archctl.io/linux-amd64", "qemu"),
            ("emulation.archctl.io/linux-riscv64", "qemu"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let want: BTreeMap<String, String> = [("emulation.archctl.io/linux-amd64", "qemu")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let p = label_patch(&cur, &want).unwrap();
        assert_eq!(
            p,
            serde_json::json!({"metadata": {"labels": {"emulation.archctl.io/linux-riscv64": null}}})
        );
        assert_eq!(label_patch(&want, &want), None);
        let p = label_patch(&cur, &BTreeMap::new()).unwrap();
        let l = &p["metadata"]["labels"];
        assert_eq!(l.as_object().unwrap().len(), 2);
        assert!(l.get("kubernetes.io/arch").is_none());
    }
}
