//! The truth check of `inspect --verify-platforms` against a real registry (Debian's
//! docker-registry on 127.0.0.1): the program each image starts is found in its layers
//! and its ELF header compared with the label.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{path::Path, process::Command};

use serde_json::{Value, json};
use support::registry::{
    FaultProxy, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, Pusher, Registry,
    RegistryAuth, digest_of, gzip, test_program,
};
use support::{ARCHCTL, RegistryIsolated, Run, RunExt, assert_code, doctor_check};

const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

enum E<'a> {
    File(&'a [u8]),
    Symlink(&'a str),
    Hardlink(&'a str),
}

fn tar_of(entries: &[(&str, E)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, e) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_mtime(0);
        let data: &[u8] = match e {
            E::File(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                d
            }
            E::Symlink(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name(t).unwrap();
                b""
            }
            E::Hardlink(t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_link_name(t).unwrap();
                b""
            }
        };
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A layer: its tar and how it is compressed for the registry.
struct Layer {
    tar: Vec<u8>,
    zstd: bool,
}

impl Layer {
    fn gz(tar: Vec<u8>) -> Layer {
        Layer { tar, zstd: false }
    }
    fn blob(&self) -> (Vec<u8>, &'static str) {
        if self.zstd {
            (
                ruzstd::encoding::compress_to_vec(
                    &self.tar[..],
                    ruzstd::encoding::CompressionLevel::Fastest,
                ),
                OCI_LAYER_ZSTD,
            )
        } else {
            (gzip(&self.tar), OCI_LAYER_GZIP)
        }
    }
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": digest_of(bytes), "size": bytes.len()})
}

/// Push an image (layers bottom first) whose config says `config_platform` and runs
/// `entrypoint`; behind an index entry labelled `label` when there is one. Returns the
/// reference and the layer digests.
fn push(
    reg: &Registry,
    repo: &str,
    label: Option<&str>,
    config_platform: &str,
    entrypoint: &[&str],
    env: &[&str],
    layers: &[Layer],
) -> (String, Vec<String>) {
    let mut pusher = Pusher::new(&reg.addr());
    let mut descs = Vec::new();
    let mut digests = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let (blob, mt) = l.blob();
        digests.push(pusher.blob(repo, &blob));
        descs.push(descriptor(mt, &blob));
        diff_ids.push(digest_of(&l.tar));
    }
    let (os, arch) = config_platform.split_once('/').unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": arch, "os": os,
        "config": {"Entrypoint": entrypoint, "Env": env},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    pusher.blob(repo, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config), "layers": descs,
    }))
    .unwrap();
    match label {
        None => {
            pusher.manifest(repo, "v1", OCI_MANIFEST, &manifest);
        }
        Some(label) => {
            let d = pusher.manifest(repo, &digest_of(&manifest), OCI_MANIFEST, &manifest);
            let (os, arch) = label.split_once('/').unwrap();
            let mut entry = descriptor(OCI_MANIFEST, &manifest);
            entry["platform"] = json!({"os": os, "architecture": arch});
            assert_eq!(entry["digest"], d.as_str());
            let index = serde_json::to_vec(&json!({
                "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry],
            }))
            .unwrap();
            pusher.manifest(repo, "v1", OCI_INDEX, &index);
        }
    }
    (format!("{}/{repo}:v1", reg.addr()), digests)
}

fn inspect(cache: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(ARCHCTL);
    c.args(["inspect", "--timeout", "20", "--verify-platforms"])
        .args(args)
        .registry_isolated(cache.join("cache"), cache.join("docker"))
        .env("HOME", cache)
        .env_remove("XDG_CACHE_HOME");
    for (k, v) in env {
        c.env(k, v);
    }
    c.run()
}

fn inspect_json(cache: &Path, reference: &str, env: &[(&str, &str)]) -> (Run, Value) {
    let mut c = Command::new(ARCHCTL);
    c.args(["--json", "inspect", "--timeout", "20", "--verify-platforms"])
        .arg(reference)
        .registry_isolated(cache.join("cache"), cache.join("docker"))
        .env("HOME", cache)
        .env_remove("XDG_CACHE_HOME");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.run();
    let v = out.json();
    let p = v["images"][0]["platforms"][0].clone();
    (out, p)
}

#[test]
fn the_right_image_matches_its_label() {
    let reg = Registry::start(RegistryAuth::None);
    let dir = tempfile::tempdir().unwrap();
    let amd64 = test_program("x86_64");
    let (r, digests) = push(
        &reg,
        "truth/right",
        Some("linux/amd64"),
        "linux/amd64",
        &["/bin/busybox"],
        &[],
        &[Layer::gz(tar_of(&[("bin/busybox", E::File(&amd64))]))],
    );
    let (out, p) = inspect_json(dir.path(), &r, &[]);
    assert_code(&out, 0);
    assert_eq!(p["label_matches"], true, "{p}");
    assert_eq!(p["mismatch"], false, "{p}");
    assert_eq!(
        p["elf"],
        json!({"machine": "X86_64", "class": "ELF64", "endianness": "little", "static": true,
               "interpreter": null, "platform": "linux/amd64"})
    );
    assert_eq!(p["truth"]["binary"], "/bin/busybox");
    assert_eq!(p["truth"]["layer"], digests[0].as_str());
    // An absolute entrypoint: the layer is left as soon as the file is read.
    assert_eq!(p["truth"]["layers_partial"], 1, "{p}");
    // A single manifest (no index): the config's platform is the label.
    let (r, _) = push(
        &reg,
        "truth/single",
        None,
        "linux/amd64",
        &["/bin/busybox"],
        &[],
        &[Layer::gz(tar_of(&[("bin/busybox", E::File(&amd64))]))],
    );
    let out = inspect(dir.path(), &[&r], &[]);
    assert_code(&out, 0);
    assert!(
        out.stdout().contains("ok: /bin/busybox is linux/amd64"),
        "{}",
        out.shown()
    );
}

#[test]
fn a_dynamic_binary_reports_its_interpreter() {
    // The host's /bin/sh, when it is a dynamically linked x86-64 program.
    let sh = std::fs::canonicalize("/bin/sh")
        .and_then(std::fs::read)
        .unwrap();
    let head = &sh[..sh.len().min(4096)];
    let Some(at) = head.windows(8).position(|w| w == b"/lib64/l") else {
        eprintln!("skipped: /bin/sh is not a dynamic x86-64 program");
        return;
    };
    let end = head[at..].iter().position(|&b| b == 0).unwrap() + at;
    let interp = String::from_utf8_lossy(&head[at..end]).into_owned();
    let reg = Registry::start(RegistryAuth::None);
    let dir = tempfile::tempdir().unwrap();
    let (r, _) = push(
        &reg,
        "truth/dynamic",
        Some("linux/amd64"),
        "linux/amd64",
        &["/bin/sh"],
        &[],
        &[Layer::gz(tar_of(&[("bin/sh", E::File(&sh))]))],
    );
    let (out, p) = inspect_json(dir.path(), &r, &[]);
    assert_code(&out, 0);
    assert_eq!(p["label_matches"], true, "{p}");
    assert_eq!(p["elf"]["static"], false, "{p}");
    assert_eq!(p["elf"]["interpreter"], interp.as_str(), "{p}");
}

#[test]
fn a_mislabeled_image_is_caught() {
    // Index and config both say linux/arm64; the layer holds an amd64 busybox, started
    // as `sh` through PATH (a hard link, as busybox images have it).
    let reg = Registry::start(RegistryAuth::None);
    let dir = tempfile::tempdir().unwrap();
    let amd64 = test_program("x86_64");
    let (r, _) = push(
        &reg,
        "truth/mislabeled",
        Some("linux/arm64"),
        "linux/arm64",
        &["sh"],
        &["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        &[Layer::gz(tar_of(&[
            ("bin/busybox", E::File(&amd64)),
            ("bin/sh", E::Hardlink("bin/busybox")),
        ]))],
    );
    let (out, p) = inspect_json(dir.path(), &r, &[]);
    // As for a config that contradicts the index: reported, with a warning, exit 0.
    assert_code(&out, 0);
    assert_eq!(
        p["mismatch"], false,
        "the config agrees with the index: {p}"
    );
    assert_eq!(p["label_matches"], false, "{p}");
    assert_eq!(p["elf"]["machine"], "X86_64");
    assert_eq!(p["elf"]["platform"], "linux/amd64");
    assert_eq!(p["truth"]["binary"], "/bin/sh");
    // PATH order: the earlier candidates had to be proven absent, so the layer was
    // read to its end and its digest verified.
    assert_eq!(p["truth"]["layers_verified"], 1, "{p}");
    assert!(
        out.stderr()
            .contains("MISMATCH: index says linux/arm64, /bin/sh in the layers is linux/amd64"),
        "{}",
        out.shown()
    );
    let out = inspect(dir.path(), &[&r], &[]);
    assert_code(&out, 0);
    assert!(
        out.stdout()
            .contains("MISMATCH: index says linux/arm64, /bin/sh in the layers is linux/amd64"),
        "{}",
        out.shown()
    );
}

#[test]
fn an_entrypoint_behind_a_symlink_in_a_lower_layer_is_found() {
    let reg = Registry::start(RegistryAuth::None);
    let dir = tempfile::tempdir().unwrap();
    let arm64 = test_program("aarch64");
    let lower = Layer::gz(tar_of(&[("usr/lib/app/app", E::File(&arm64))]));
    let upper = Layer::gz(tar_of(&[
        ("etc/motd", E::File(b"hello")),
        ("usr/bin/app", E::Symlink("../lib/app/app")),
    ]));
    let (r, digests) = push(
        &reg,
        "truth/symlink",
        Some("linux/arm64"),
        "linux/arm64",
        &["/usr/bin/app"],
        &[],
        &[lower, upper],
    );
    let (out, p) = inspect_json(dir.path(), &r, &[]);
    assert_code(&out, 0);
    assert_eq!(p["label_matches"], true, "{p}");
    assert_eq!(p["elf"]["machine"], "AARCH64");
    assert_eq!(p["truth"]["binary"], "/usr/lib/app/app");
    assert_eq!(
        p["truth"]["resolved"],
        json!(["/usr/bin/app", "/usr/lib/app/app"])
    );
    assert_eq!(p["truth"]["layer"], digests[0].as_str(), "the lower layer");
    assert_eq!(p["truth"]["layers_read"], 2);
    // The upper layer was read to its end (the target was not in it) and verified.
    assert_eq!(p["truth"]["layers_verified"], 1, "{p}");
    assert_eq!(p["truth"]["layers_partial"], 1, "{p}");
}

#[test]
fn a_script_entrypoint_is_checked_through_its_interpreter() {
    let reg = Registry::start(RegistryAuth::None);
    let dir = tempfile::tempdir().unwrap();
    let arm64 = test_program("aarch64");
    let (r, _) = push(
        &reg,
        "truth/script",
        Some("linux/amd64"),
        "linux/amd64",
        &["/entry.sh"],
        &["PATH=/usr/bin"],
        &[
            Layer::gz(tar_of(&[("usr/bin/python3", E::File(&arm64))])),
            Layer::gz(tar_of(&[(
                "entry.sh",
                E::File(b"#!/usr/bin/env python3\nprint(1)\n"),
            )])),
        ],
    );
    let (out, p) = inspect_json(dir.path(), &r, &[]);
    assert_code(&out, 0);
    assert_eq!(p["label_matches"], false, "{p}");
    assert_eq!(p["truth"]["binary"], "/usr/bin/python3");
    assert_eq!(
        p["truth"]["scripts"],
        json!(["/entry.sh: #!/usr/bin/env python3"])
    );
    // Not an ELF and no interpreter: no verdict, and why.
    let (r, _) = push(
        &reg,
        "truth/text",
        Some("linux/amd64"),
        "linux/amd64",
        &["/app"],
        &[],
        &[Layer::gz(tar_of(&[("app", E::File(b"hello"))]))],
    );
    let (out, p) = inspect_json(dir.path(), &r, &[]);
    assert_code(&out, 0);
    assert_eq!(p["label_matches"], Value::Null, "{p}");
    assert!(
        p["truth"]["why"]
            .as_str()
            .unwrap()
            .contains("/app is not an ELF file"),
        "{p}"
    );
}

#[test]
fn a_whiteout_hides_a_lower_layers_binary() {
    let reg = Registry::start(RegistryAuth::None);
    let dir = tempfile::tempdir().unwrap();
    let arm64 = test_program("aarch64");
    let amd64 = test_program("x86_64");
    // PATH finds /bin/app first, but the upper layer deletes it: /usr/local/bin/app
    // (amd64) is what runs.
    let (r, _) = push(
        &reg,
        "truth/whiteout",
        Some("linux/arm64"),
        "linux/arm64",
        &["app"],
        &["PATH=/bin:/usr/local/bin"],
        &[
            Layer::gz(tar_of(&[("bin/app", E::File(&arm64))])),
            Layer::gz(tar_of(&[
                ("bin/.wh.app", E::File(b"")),
                ("usr/local/bin/app", E::File(&amd64)),
            ])),
        ],
    );
    let (out, p) = inspect_json(dir.path(), &r, &[]);
    assert_code(&out, 0);
    assert_eq!(p["truth"]["binary"], "/usr/local/bin/app", "{p}");
    assert_eq!(p["label_matches"], false, "{p}");
}

#[test]
fn a_zstd_layer_is_read() {
    let reg = Registry::start(RegistryAuth::None);
    let dir = tempfile::tempdir().unwrap();
    let arm64 = test_program("aarch64");
    let (r, _) = push(
        &reg,
        "truth/zstd",
        Some("linux/arm64"),
        "linux/arm64",
        &["/app"],
        &[],
        &[Layer {
            tar: tar_of(&[("app", E::File(&arm64))]),
            zstd: true,
        }],
    );
    let (out, p) = inspect_json(dir.path(), &r, &[]);
    assert_code(&out, 0);
    assert_eq!(p["label_matches"], true, "{p}");
    assert_eq!(p["elf"]["machine"], "AARCH64");
}

/// Incompressible bytes.
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn the_byte_caps_stop_the_search_with_a_clear_message() {
    let reg = Registry::start(RegistryAuth::None);
    let dir = tempfile::tempdir().unwrap();
    // A 3 MiB layer without the file, a compressed cap of 1 MiB.
    let big = noise(3 << 20);
    let (r, _) = push(
        &reg,
        "truth/huge",
        Some("linux/amd64"),
        "linux/amd64",
        &["/app"],
        &[],
        &[Layer::gz(tar_of(&[("noise", E::File(&big))]))],
    );
    let (out, p) = inspect_json(dir.path(), &r, &[("ARCHCTL_TRUTH_MAX_BYTES", "1048576")]);
    assert_code(&out, 0);
    assert_eq!(p["label_matches"], Value::Null, "{p}");
    let why = p["truth"]["why"].as_str().unwrap();
    assert!(
        why.contains("stopped after 1048576 compressed bytes") && why.contains("/app"),
        "{why}"
    );
    assert!(p["truth"]["compressed_bytes"].as_u64().unwrap() <= (1 << 20) + (64 << 10));
    // A decompression bomb: 64 MiB of zeros (a few KiB of gzip) before the program;
    // an unpacked cap of 16 MiB.
    let zeros = vec![0u8; 64 << 20];
    let amd64 = test_program("x86_64");
    let (r, _) = push(
        &reg,
        "truth/bomb",
        Some("linux/amd64"),
        "linux/amd64",
        &["/app"],
        &[],
        &[Layer::gz(tar_of(&[
            ("zeros", E::File(&zeros)),
            ("app", E::File(&amd64)),
        ]))],
    );
    let (out, p) = inspect_json(
        dir.path(),
        &r,
        &[("ARCHCTL_TRUTH_MAX_UNPACKED_BYTES", "16777216")],
    );
    assert_code(&out, 0);
    assert_eq!(p["label_matches"], Value::Null, "{p}");
    let why = p["truth"]["why"].as_str().unwrap();
    assert!(
        why.contains("stopped after 16777216 unpacked bytes"),
        "{why}"
    );
    // Under the default caps the same image is checked.
    let (out, p) = inspect_json(dir.path(), &r, &[]);
    assert_code(&out, 0);
    assert_eq!(p["label_matches"], true, "{p}");
}

#[test]
fn a_second_inspect_reads_no_layer() {
    let reg = Registry::start(RegistryAuth::None);
    let proxy = FaultProxy::start(&reg.addr());
    let dir = tempfile::tempdir().unwrap();
    let amd64 = test_program("x86_64");
    let (r, digests) = push(
        &reg,
        "truth/cached",
        Some("linux/arm64"),
        "linux/arm64",
        &["sh"],
        &[],
        &[Layer::gz(tar_of(&[
            ("bin/busybox", E::File(&amd64)),
            ("bin/sh", E::Symlink("busybox")),
        ]))],
    );
    let r = r.replace(&reg.addr(), &proxy.addr());
    let layer = format!("/blobs/{}", digests[0]);
    let (out, first) = inspect_json(dir.path(), &r, &[]);
    assert_code(&out, 0);
    assert_eq!(first["label_matches"], false, "{first}");
    assert_eq!(first["truth"]["cached"], false);
    assert_eq!(
        proxy.count_matching(&layer),
        1,
        "{:?}",
        proxy.requests_log()
    );
    let (out, second) = inspect_json(dir.path(), &r, &[]);
    assert_code(&out, 0);
    assert_eq!(second["label_matches"], false, "{second}");
    assert_eq!(second["truth"]["cached"], true, "{second}");
    assert_eq!(second["truth"]["compressed_bytes"], 0);
    assert_eq!(second["truth"]["binary"], "/bin/busybox");
    assert_eq!(
        proxy.count_matching(&layer),
        1,
        "the layer was read again: {:?}",
        proxy.requests_log()
    );
}

#[test]
fn a_layer_read_to_its_end_that_does_not_match_its_digest_is_an_error() {
    let reg = Registry::start(RegistryAuth::None);
    let dir = tempfile::tempdir().unwrap();
    let amd64 = test_program("x86_64");
    let (r, digests) = push(
        &reg,
        "truth/tampered",
        Some("linux/amd64"),
        "linux/amd64",
        &["app"],
        &[],
        &[Layer::gz(tar_of(&[("bin/app", E::File(&amd64))]))],
    );
    // The registry serves other (valid) layer bytes under the digest.
    let other = gzip(&tar_of(&[
        ("bin/app", E::File(&amd64)),
        ("etc/extra", E::File(b"x")),
    ]));
    std::fs::write(reg.blob_path(&digests[0]), &other).unwrap();
    let (out, v) = {
        let mut c = Command::new(ARCHCTL);
        c.args([
            "--json",
            "inspect",
            "--timeout",
            "20",
            "--verify-platforms",
            &r,
        ])
        .registry_isolated(dir.path().join("cache"), dir.path().join("docker"))
        .env("HOME", dir.path());
        let out = c.run();
        let v = out.json();
        (out, v)
    };
    assert_code(&out, 1);
    let err = v["images"][0]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains(&digests[0]) && err.contains("does not match its digest"),
        "{}",
        out.shown()
    );
}

#[test]
fn the_library_call_for_doctor_checks_every_platform() {
    let reg = Registry::start(RegistryAuth::None);
    let amd64 = test_program("x86_64");
    let (r, _) = push(
        &reg,
        "truth/library",
        Some("linux/arm64"),
        "linux/arm64",
        &["/bin/busybox"],
        &[],
        &[Layer::gz(tar_of(&[("bin/busybox", E::File(&amd64))]))],
    );
    let inspector = archctl::registry::inspect::Inspector::new(archctl::registry::Options {
        cache: false,
        ..Default::default()
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let platforms = rt.block_on(inspector.truth_of(&r)).unwrap();
    assert_eq!(platforms.len(), 1);
    let t = platforms[0].truth.as_ref().unwrap();
    assert_eq!(t.label_matches, Some(false));
    assert_eq!(t.truth.label, "linux/arm64");
    assert_eq!(t.truth.binary.as_deref(), Some("/bin/busybox"));
    assert_eq!(
        t.elf.as_ref().unwrap().platform.as_deref(),
        Some("linux/amd64")
    );
    assert!(
        t.summary().starts_with("MISMATCH: index says linux/arm64"),
        "{}",
        t.summary()
    );
}

#[test]
fn a_merged_usr_image_is_followed_through_its_directory_symlink() {
    // Debian's layout: /bin -> usr/bin in the base layer; the upper layer adds
    // /usr/bin/sh -> dash. PATH=/bin:/usr/bin finds /bin/sh through both.
    let reg = Registry::start(RegistryAuth::None);
    let dir = tempfile::tempdir().unwrap();
    let arm64 = test_program("aarch64");
    let (r, digests) = push(
        &reg,
        "truth/merged-usr",
        Some("linux/arm64"),
        "linux/arm64",
        &["sh"],
        &["PATH=/bin:/usr/bin"],
        &[
            Layer::gz(tar_of(&[
                ("bin", E::Symlink("usr/bin")),
                ("usr/bin/dash", E::File(&arm64)),
            ])),
            Layer::gz(tar_of(&[("usr/bin/sh", E::Symlink("dash"))])),
        ],
    );
    let (out, p) = inspect_json(dir.path(), &r, &[]);
    assert_code(&out, 0);
    assert_eq!(p["label_matches"], true, "{p}");
    assert_eq!(p["truth"]["binary"], "/usr/bin/dash", "{p}");
    assert_eq!(p["truth"]["layer"], digests[0].as_str(), "{p}");
    assert_eq!(
        p["truth"]["resolved"],
        json!(["/bin/sh", "/usr/bin/sh", "/usr/bin/dash"]),
        "{p}"
    );
}

/// `archctl doctor IMAGE`, with the registry isolated as `inspect` is here.
fn doctor_json(cache: &Path, reference: &str) -> (Run, Value) {
    let out = Command::new(ARCHCTL)
        .args(["--json", "doctor", "--timeout", "20"])
        .arg(reference)
        .registry_isolated(cache.join("cache"), cache.join("docker"))
        .env("HOME", cache)
        .env_remove("XDG_CACHE_HOME")
        .run();
    let v = out.json();
    (out, v)
}

#[test]
fn doctor_image_names_the_mislabeled_platform_and_passes_a_right_one() {
    let (native, target) = match std::env::consts::ARCH {
        "x86_64" => ("linux/amd64", "x86_64"),
        "aarch64" => ("linux/arm64", "aarch64"),
        other => {
            eprintln!("skipped: no native test image for {other}");
            return;
        }
    };
    let foreign_label = if native == "linux/amd64" {
        "linux/arm64"
    } else {
        "linux/amd64"
    };
    let reg = Registry::start(RegistryAuth::None);
    let dir = tempfile::tempdir().unwrap();
    let program = test_program(target);
    // Right: labelled with this host's platform, and it is.
    let (right, _) = push(
        &reg,
        "doctor/right",
        Some(native),
        native,
        &["/bin/busybox"],
        &[],
        &[Layer::gz(tar_of(&[("bin/busybox", E::File(&program))]))],
    );
    let (out, r) = doctor_json(dir.path(), &right);
    assert_code(&out, 0);
    let p = doctor_check(&r, &format!("platform:{native}"));
    assert_eq!(p["verdict"], "ok", "{}", out.shown());
    let f = p["finding"].as_str().unwrap();
    assert!(f.starts_with("ok: /bin/busybox is"), "{p}");
    assert!(
        f.contains("this host would run it natively (its choice)"),
        "{p}"
    );
    let c = doctor_check(&r, "choice");
    assert_eq!(c["verdict"], "ok", "{c}");
    assert_eq!(
        c["finding"],
        format!("this host would run {native} natively")
    );
    // Mislabeled: index and config say the foreign platform, the binary is this host's.
    let (wrong, _) = push(
        &reg,
        "doctor/mislabeled",
        Some(foreign_label),
        foreign_label,
        &["/bin/busybox"],
        &[],
        &[Layer::gz(tar_of(&[("bin/busybox", E::File(&program))]))],
    );
    let (out, r) = doctor_json(dir.path(), &wrong);
    assert_code(&out, 1);
    let p = doctor_check(&r, &format!("platform:{foreign_label}"));
    let f = p["finding"].as_str().unwrap();
    assert!(
        f.contains(&format!(
            "MISMATCH: index says {foreign_label}, /bin/busybox in the layers is {native}"
        )),
        "{p}"
    );
    assert!(p["fix"].as_str().unwrap().contains("label is wrong"), "{p}");
    // The only platform: chosen (emulated) and so a failure, or not runnable here (no
    // emulator registered on this host) and then the choice fails.
    if f.contains("(its choice)") {
        assert_eq!(p["verdict"], "fail", "{p}");
    } else {
        assert_eq!(p["verdict"], "warn", "{p}");
        assert_eq!(doctor_check(&r, "choice")["verdict"], "fail", "{r:#}");
    }
    assert!(
        out.stderr().contains("archctl: error: doctor: "),
        "{}",
        out.shown()
    );
}
