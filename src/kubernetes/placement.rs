//! The placement webhook's decisions, pure: which pods it may touch ([`scope`]), which
//! images a pod runs ([`images`]), where they can run ([`decide`]: the Linux
//! architectures every image offers), and the JSON Patch that says so ([`patch`]): a
//! required node affinity to nodes that run those architectures natively OR whose agent
//! label says they emulate them, a preferred one toward native nodes, and annotations
//! saying what was decided and from which digests. Pods are handled as JSON, so fields
//! this build does not know are kept as they are.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::labels::{self, ARCH_LABEL, BETA_ARCH_LABEL};

/// The annotation with the decision (`placed: ...` or `skipped: <reason>`).
pub const PLACEMENT_ANNOTATION: &str = "archctl.io/placement";
/// The annotation with the digests the decision came from (JSON: image → digest).
pub const IMAGES_ANNOTATION: &str = "archctl.io/placement-images";
/// A namespace with this label set to `disabled` is never touched.
pub const OPT_OUT_LABEL: &str = "archctl.io/placement";
pub const OPT_OUT_VALUE: &str = "disabled";
/// Most node selector terms a patched pod may end up with (existing terms × ours).
pub const MAX_TERMS: usize = 64;
/// Longest annotation value written (a registry's message can be long).
pub const MAX_ANNOTATION: usize = 512;

/// What one image offers, from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFacts {
    pub image: String,
    pub digest: String,
    /// The `linux` architectures (OCI/GOARCH words) it has an image for; attestation
    /// manifests (`unknown/unknown`) and other OSes are not among them.
    pub archs: BTreeSet<String>,
}

/// What the webhook does with a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not the webhook's business (its scope, or the pod chose an architecture): no
    /// patch at all.
    Untouched(String),
    /// Admitted unchanged but for the annotation saying why (fail open).
    Skipped(String),
    /// Constrained to these architectures (sorted), from these digests.
    Placed {
        archs: Vec<String>,
        digests: BTreeMap<String, String>,
    },
}

impl Decision {
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Untouched(_) => "untouched",
            Decision::Skipped(_) => "skipped",
            Decision::Placed { .. } => "placed",
        }
    }

    /// The placement annotation's value (none for untouched pods).
    pub fn annotation(&self, weight: u8) -> Option<String> {
        let v = match self {
            Decision::Untouched(_) => return None,
            Decision::Skipped(why) => format!("skipped: {why}"),
            Decision::Placed { archs, .. } => {
                let a = archs.join(", ");
                if weight > 0 {
                    format!("placed: {a} (native or emulated); prefers native {a}")
                } else {
                    format!("placed: {a} (native or emulated)")
                }
            }
        };
        Some(truncate(&v, MAX_ANNOTATION))
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Why the webhook must leave a pod alone, if it must: a `nodeName`, DaemonSet-owned,
/// a static (mirror) pod, its own namespace, `kube-system`, an opted-out namespace, or
/// the pod already constrains its architecture.
pub fn scope(pod: &Value, namespace: &str, own_namespace: &str, opted_out: bool) -> Option<String> {
    if namespace == "kube-system" {
        return Some("namespace kube-system".into());
    }
    if namespace == own_namespace {
        return Some(format!("the webhook's own namespace {namespace}"));
    }
    if opted_out {
        return Some(format!(
            "namespace {namespace} is labelled {OPT_OUT_LABEL}={OPT_OUT_VALUE}"
        ));
    }
    let meta = &pod["metadata"];
    if meta["annotations"]["kubernetes.io/config.mirror"].is_string() {
        return Some("a static (mirror) pod".into());
    }
    if let Some(owners) = meta["ownerReferences"].as_array()
        && owners.iter().any(|o| o["kind"] == "DaemonSet")
    {
        return Some("owned by a DaemonSet".into());
    }
    let spec = &pod["spec"];
    if spec["nodeName"].as_str().is_some_and(|n| !n.is_empty()) {
        return Some("nodeName is set".into());
    }
    if let Some(key) = arch_constraint(spec) {
        return Some(format!("it constrains the architecture already ({key})"));
    }
    None
}

/// The first key by which the pod's spec chooses an architecture: nodeSelector or node
/// affinity (required or preferred, expressions or fields) on `kubernetes.io/arch`,
/// `beta.kubernetes.io/arch`, or archctl's own labels (a pod this webhook placed).
fn arch_constraint(spec: &Value) -> Option<String> {
    let is_arch = |k: &str| k == ARCH_LABEL || k == BETA_ARCH_LABEL || labels::is_ours(k);
    if let Some(sel) = spec["nodeSelector"].as_object()
        && let Some(k) = sel.keys().find(|k| is_arch(k))
    {
        return Some(format!("nodeSelector {k}"));
    }
    let na = &spec["affinity"]["nodeAffinity"];
    let mut terms: Vec<&Value> = Vec::new();
    if let Some(t) =
        na["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"].as_array()
    {
        terms.extend(t);
    }
    if let Some(p) = na["preferredDuringSchedulingIgnoredDuringExecution"].as_array() {
        terms.extend(p.iter().map(|p| &p["preference"]));
    }
    for t in terms {
        for field in ["matchExpressions", "matchFields"] {
            if let Some(exprs) = t[field].as_array()
                && let Some(k) = exprs
                    .iter()
                    .filter_map(|e| e["key"].as_str())
                    .find(|k| is_arch(k))
            {
                return Some(format!("node affinity {k}"));
            }
        }
    }
    None
}

/// The images of every init container and container, first appearance first, each once.
pub fn images(pod: &Value) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for field in ["initContainers", "containers"] {
        for c in pod["spec"][field].as_array().into_iter().flatten() {
            if let Some(i) = c["image"].as_str()
                && seen.insert(i.to_string())
            {
                out.push(i.to_string());
            }
        }
    }
    out
}

/// The pod's pull secrets' names.
pub fn pull_secrets(pod: &Value) -> Vec<String> {
    pod["spec"]["imagePullSecrets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Where the images can run together: the architectures every image offers.
pub fn decide(pod: &Value, facts: &[ImageFacts]) -> Decision {
    if facts.is_empty() {
        return Decision::Skipped("the pod names no image".into());
    }
    let mut common: Option<BTreeSet<String>> = None;
    for f in facts {
        common = Some(match common {
            None => f.archs.clone(),
            Some(c) => c.intersection(&f.archs).cloned().collect(),
        });
    }
    let common = common.unwrap_or_default();
    if common.is_empty() {
        let each = facts
            .iter()
            .map(|f| {
                let a: Vec<&str> = f.archs.iter().map(String::as_str).collect();
                format!(
                    "{} offers {}",
                    f.image,
                    if a.is_empty() {
                        "no linux image".into()
                    } else {
                        a.join(", ")
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Decision::Skipped(format!("no architecture runs every image ({each})"));
    }
    let existing = existing_terms(pod).len().max(1);
    let ours = 1 + 2 * common.len();
    if existing * ours > MAX_TERMS {
        return Decision::Skipped(format!(
            "the pod's {existing} node selector terms times {ours} of archctl's would be {} terms (at most {MAX_TERMS})",
            existing * ours
        ));
    }
    Decision::Placed {
        archs: common.into_iter().collect(),
        digests: facts
            .iter()
            .map(|f| (f.image.clone(), f.digest.clone()))
            .collect(),
    }
}

fn existing_terms(pod: &Value) -> Vec<Value> {
    pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// archctl's terms for `archs` (ORed): native by `kubernetes.io/arch`, native by the
/// agent's `native.archctl.io/` label (e.g. AArch32 on arm64), emulated by its
/// `emulation.archctl.io/` label.
fn our_terms(archs: &[String]) -> Vec<Value> {
    let mut t = vec![json!({"matchExpressions": [
        {"key": ARCH_LABEL, "operator": "In", "values": archs}
    ]})];
    for a in archs {
        t.push(json!({"matchExpressions": [
            {"key": labels::native_key("linux", a), "operator": "Exists"}
        ]}));
    }
    for a in archs {
        t.push(json!({"matchExpressions": [
            {"key": labels::emulation_key("linux", a), "operator": "Exists"}
        ]}));
    }
    t
}

/// The pod's node affinity with archctl's constraint: each existing required term ANDed
/// with each of archctl's (their expressions joined), or archctl's alone; the preferred
/// term (weight 1-100; 0: none) appended to the existing ones.
pub fn node_affinity(pod: &Value, archs: &[String], weight: u8) -> Value {
    let mut na = pod["spec"]["affinity"]["nodeAffinity"].clone();
    if !na.is_object() {
        na = json!({});
    }
    let ours = our_terms(archs);
    let existing = existing_terms(pod);
    let terms: Vec<Value> = if existing.is_empty() {
        ours
    } else {
        let mut v = Vec::new();
        for e in &existing {
            for o in &ours {
                let mut t = e.clone();
                let mut exprs = e["matchExpressions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                exprs.extend(
                    o["matchExpressions"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                );
                t["matchExpressions"] = Value::Array(exprs);
                v.push(t);
            }
        }
        v
    };
    na["requiredDuringSchedulingIgnoredDuringExecution"] = json!({ "nodeSelectorTerms": terms });
    if weight > 0 {
        let mut pref = na["preferredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        pref.push(
            json!({"weight": weight, "preference": {"matchExpressions": [
                {"key": ARCH_LABEL, "operator": "In", "values": archs}
            ]}}),
        );
        na["preferredDuringSchedulingIgnoredDuringExecution"] = Value::Array(pref);
    }
    na
}

/// JSON Pointer escaping of one path segment (RFC 6901).
fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The JSON Patch (RFC 6902) for a decision; None for an untouched pod.
pub fn patch(pod: &Value, decision: &Decision, weight: u8) -> Option<Value> {
    let annotation = decision.annotation(weight)?;
    let mut notes = vec![(PLACEMENT_ANNOTATION, annotation)];
    let mut ops = Vec::new();
    if let Decision::Placed { archs, digests } = decision {
        notes.push((
            IMAGES_ANNOTATION,
            truncate(
                &serde_json::to_string(digests).unwrap_or_default(),
                16 * 1024,
            ),
        ));
        let na = node_affinity(pod, archs, weight);
        if pod["spec"]["affinity"].is_object() {
            ops.push(json!({"op": "add", "path": "/spec/affinity/nodeAffinity", "value": na}));
        } else {
            ops.push(json!({"op": "add", "path": "/spec/affinity", "value": {"nodeAffinity": na}}));
        }
    }
    if pod["metadata"]["annotations"].is_object() {
        for (k, v) in notes {
            ops.push(json!({"op": "add",
                            "path": format!("/metadata/annotations/{}", pointer_segment(k)),
                            "value": v}));
        }
    } else {
        let m: serde_json::Map<String, Value> = notes
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect();
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": m}));
    }
    Some(Value::Array(ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    fn facts(image: &str, archs: &[&str]) -> ImageFacts {
        ImageFacts {
            image: image.into(),
            digest: format!("sha256:{}", image.len()),
            archs: archs.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Applies a JSON Patch of "add" operations (all this module writes).
    fn apply(mut doc: Value, ops: &Value) -> Value {
        for op in ops.as_array().unwrap() {
            assert_eq!(op["op"], "add");
            let path = op["path"].as_str().unwrap();
            let segs: Vec<String> = path[1..]
                .split('/')
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect();
            let (last, parents) = segs.split_last().unwrap();
            let mut cur = &mut doc;
            for s in parents {
                cur = cur.get_mut(s).unwrap_or_else(|| panic!("{path}: no {s}"));
            }
            cur.as_object_mut()
                .unwrap()
                .insert(last.clone(), op["value"].clone());
        }
        doc
    }

    #[test]
    fn scope_never_touches() {
        let p = pod(json!({"containers": [{"image": "a"}]}));
        assert_eq!(scope(&p, "default", "archctl-system", false), None);
        assert!(scope(&p, "kube-system", "archctl-system", false).is_some());
        assert!(scope(&p, "archctl-system", "archctl-system", false).is_some());
        assert!(
            scope(&p, "team", "archctl-system", true)
                .unwrap()
                .contains("disabled")
        );
        let ds = json!({"metadata": {"ownerReferences": [{"kind": "DaemonSet", "name": "x"}]},
                        "spec": {"containers": [{"image": "a"}]}});
        assert_eq!(
            scope(&ds, "default", "s", false).unwrap(),
            "owned by a DaemonSet"
        );
        let rs = json!({"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "name": "x"}]},
                        "spec": {"containers": [{"image": "a"}]}});
        assert_eq!(scope(&rs, "default", "s", false), None);
        let mirror =
            json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}, "spec": {}});
        assert!(
            scope(&mirror, "default", "s", false)
                .unwrap()
                .contains("mirror")
        );
        let named = pod(json!({"nodeName": "n1", "containers": []}));
        assert!(
            scope(&named, "default", "s", false)
                .unwrap()
                .contains("nodeName")
        );
        for spec in [
            json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}}),
            json!({"nodeSelector": {"beta.kubernetes.io/arch": "arm64"}}),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}}}),
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution":
                [{"weight": 1, "preference": {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}}]}}}),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [{"key": "emulation.archctl.io/linux-amd64", "operator": "Exists"}]}]}}}}),
        ] {
            assert!(
                scope(&pod(spec.clone()), "default", "s", false)
                    .unwrap()
                    .contains("constrains"),
                "{spec}"
            );
        }
        // Other node selectors are not an architecture constraint.
        let zone = pod(json!({"nodeSelector": {"topology.kubernetes.io/zone": "a"}}));
        assert_eq!(scope(&zone, "default", "s", false), None);
    }

    #[test]
    fn images_in_order_once_with_init_containers() {
        let p = pod(
            json!({"initContainers": [{"image": "init"}, {"image": "b"}],
                           "containers": [{"image": "a"}, {"image": "b"}, {"name": "noimage"}]}),
        );
        assert_eq!(images(&p), vec!["init", "b", "a"]);
        let s = pod(json!({"imagePullSecrets": [{"name": "r1"}, {"name": ""}, {}]}));
        assert_eq!(pull_secrets(&s), vec!["r1"]);
    }

    #[test]
    fn decide_intersects() {
        let p = pod(json!({}));
        let d = decide(
            &p,
            &[
                facts("a", &["amd64", "arm64"]),
                facts("b", &["arm64", "s390x"]),
            ],
        );
        let Decision::Placed { archs, digests } = &d else {
            panic!("{d:?}")
        };
        assert_eq!(archs, &vec!["arm64".to_string()]);
        assert_eq!(digests.len(), 2);
        let d = decide(&p, &[facts("a", &["amd64"]), facts("b", &["arm64"])]);
        let Decision::Skipped(why) = d else { panic!() };
        assert!(
            why.contains("no architecture runs every image") && why.contains("b offers arm64"),
            "{why}"
        );
        assert!(matches!(decide(&p, &[]), Decision::Skipped(_)));
        let d = decide(&p, &[facts("a", &[])]);
        assert!(matches!(d, Decision::Skipped(ref w) if w.contains("no linux image")));
    }

    #[test]
    fn patch_adds_affinity_and_annotations_to_a_bare_pod() {
        let p = pod(json!({"containers": [{"image": "a"}]}));
        let d = decide(&p, &[facts("a", &["amd64"])]);
        let ops = patch(&p, &d, 50).unwrap();
        let out = apply(p, &ops);
        let terms = &out["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"];
        assert_eq!(
            terms,
            &json!([
                {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]},
                {"matchExpressions": [{"key": "native.archctl.io/linux-amd64", "operator": "Exists"}]},
                {"matchExpressions": [{"key": "emulation.archctl.io/linux-amd64", "operator": "Exists"}]}
            ])
        );
        let pref = &out["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
        assert_eq!(pref[0]["weight"], 50);
        assert_eq!(
            pref[0]["preference"]["matchExpressions"][0]["values"],
            json!(["amd64"])
        );
        let a = &out["metadata"]["annotations"];
        assert_eq!(
            a[PLACEMENT_ANNOTATION],
            "placed: amd64 (native or emulated); prefers native amd64"
        );
        let digests: BTreeMap<String, String> =
            serde_json::from_str(a[IMAGES_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(digests["a"], "sha256:1");
    }

    #[test]
    fn patch_ands_with_existing_terms_and_keeps_other_affinity() {
        let p = json!({"metadata": {"name": "p", "annotations": {"x": "y"}},
        "spec": {"affinity": {
            "podAntiAffinity": {"keep": true},
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
                ]},
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 7, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}}]
            }}}});
        let d = decide(&p, &[facts("a", &["arm64"])]);
        let out = apply(p.clone(), &patch(&p, &d, 0).unwrap());
        let na = &out["spec"]["affinity"]["nodeAffinity"];
        let terms = na["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            .as_array()
            .unwrap();
        // 2 existing × 3 of archctl's.
        assert_eq!(terms.len(), 6);
        assert_eq!(terms[0]["matchExpressions"][0]["key"], "zone");
        assert_eq!(terms[0]["matchExpressions"][1]["key"], "kubernetes.io/arch");
        assert_eq!(terms[3]["matchFields"][0]["key"], "metadata.name");
        assert_eq!(
            terms[5]["matchExpressions"][0]["key"],
            "emulation.archctl.io/linux-arm64"
        );
        // Weight 0: the user's preferred term only.
        assert_eq!(
            na["preferredDuringSchedulingIgnoredDuringExecution"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(out["spec"]["affinity"]["podAntiAffinity"]["keep"], true);
        assert_eq!(out["metadata"]["annotations"]["x"], "y");
        assert_eq!(
            out["metadata"]["annotations"][PLACEMENT_ANNOTATION],
            "placed: arm64 (native or emulated)"
        );
    }

    #[test]
    fn skipped_gets_only_the_annotation_and_untouched_nothing() {
        let p = pod(json!({"containers": [{"image": "a"}]}));
        let ops = patch(
            &p,
            &Decision::Skipped("registry 127.0.0.1:1: connection refused".into()),
            50,
        )
        .unwrap();
        assert_eq!(ops.as_array().unwrap().len(), 1);
        let out = apply(p.clone(), &ops);
        assert_eq!(
            out["metadata"]["annotations"][PLACEMENT_ANNOTATION],
            "skipped: registry 127.0.0.1:1: connection refused"
        );
        assert!(out["spec"]["affinity"].is_null());
        assert_eq!(patch(&p, &Decision::Untouched("x".into()), 50), None);
        let long = Decision::Skipped("é".repeat(1000));
        assert!(long.annotation(0).unwrap().len() <= MAX_ANNOTATION);
    }

    #[test]
    fn too_many_terms_is_a_skip() {
        let many: Vec<Value> = (0..10)
            .map(|i| json!({"matchExpressions": [{"key": format!("k{i}"), "operator": "Exists"}]}))
            .collect();
        let p = pod(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": many}}}}),
        );
        let d = decide(&p, &[facts("a", &["amd64", "arm64", "s390x"])]);
        assert!(
            matches!(d, Decision::Skipped(ref w) if w.contains("at most 64")),
            "{d:?}"
        );
    }
}
