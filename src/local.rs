//! The container engine's local image store: what `docker image inspect IMAGE` (podman
//! and nerdctl alike) says about one image — its os, architecture and variant — so that
//! `pick` and `run` work for images only the engine has (built or tagged here, or a
//! registry that cannot be reached), and so that `run` notices a cached image of another
//! platform than the chosen one.
//!
//! One `image inspect` per image, started as a child process: `run` starts it before it
//! asks the registry and collects it after, so the two overlap.

use std::{
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde::Serialize;

use crate::{
    engine::Engine,
    platform::Platform,
    registry::{inspect::PlatformEntry, truth::FoundProgram},
};

/// How long `image inspect` may take (a hung daemon must not hang archctl).
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LocalError {
    #[error("cannot run {program}: {why}")]
    Spawn { program: String, why: String },
    #[error("{program} image inspect {image}: {why}")]
    Failed {
        program: String,
        image: String,
        why: String,
    },
    #[error("{program} image inspect {image}: no answer within {} s", TIMEOUT.as_secs())]
    Timeout { program: String, image: String },
    #[error("{program} image inspect {image}: unexpected output: {why}")]
    Invalid {
        program: String,
        image: String,
        why: String,
    },
}

/// Where the platforms a choice was made from came from.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The registry's index (or single manifest): the source of truth when it answers.
    #[default]
    Registry,
    /// The engine's local image store, because the registry did not know the image or
    /// could not be reached.
    Local,
}

/// An image in the engine's local store. Part of `run --json`'s contract.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LocalImage {
    /// The engine whose store holds it.
    pub engine: &'static str,
    /// The engine's image ID (`sha256:...`, the config's digest).
    pub id: String,
    /// Docker's spelling of its platform (`linux/arm64`).
    pub platform: String,
    #[serde(skip)]
    pub os: String,
    #[serde(skip)]
    pub architecture: String,
    /// The variant its config declares, if any.
    #[serde(skip)]
    pub variant: Option<String>,
    /// Entrypoint, Cmd, Env, WorkingDir (for `doctor IMAGE`'s truth check).
    #[serde(skip)]
    pub config: Box<InspectedConfig>,
}

impl LocalImage {
    /// The image as an offered platform, for `platform::choose`. Its digest is the
    /// image ID (a local image may have no manifest digest at all).
    pub fn entry(&self) -> PlatformEntry {
        PlatformEntry {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
            os_version: None,
            os_features: None,
            digest: self.id.clone(),
            config_platform: None,
            mismatch: None,
            truth: None,
        }
    }

    /// Is this image one of platform `p`? A variant the image does not declare is not
    /// held against it (many builders leave it out), as in `inspect --verify-platforms`.
    pub fn is_platform(&self, p: &Platform) -> bool {
        let mine = Platform::new(&self.os, &self.architecture, self.variant.as_deref());
        mine.os == p.os
            && mine.arch == p.arch
            && (self.variant.is_none() || mine.variant == p.variant)
    }
}

/// The fields of `image inspect`'s JSON that archctl reads (docker's, podman's and
/// nerdctl's spelling are the same).
#[derive(serde::Deserialize)]
struct Inspected {
    #[serde(rename = "Id", default)]
    id: String,
    #[serde(rename = "Os", default)]
    os: String,
    #[serde(rename = "Architecture", default)]
    architecture: String,
    #[serde(rename = "Variant", default)]
    variant: Option<String>,
    #[serde(rename = "Config", default)]
    config: Option<InspectedConfig>,
}

/// The image config's process fields, as `image inspect` shows them.
#[derive(serde::Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct InspectedConfig {
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
}

/// A running `ENGINE image inspect IMAGE`.
pub struct Lookup {
    engine: Engine,
    image: String,
    pid: u32,
    done: mpsc::Receiver<std::io::Result<Output>>,
}

impl Lookup {
    /// Start `ENGINE image inspect IMAGE` (the engine resolves the name as its `run`
    /// would: short names, its own configuration and environment).
    pub fn start(engine: Engine, image: &str) -> Result<Lookup, LocalError> {
        let program = engine.program();
        let child: Child = Command::new(program)
            .args(["image", "inspect", "--", image])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| LocalError::Spawn {
                program: program.to_string(),
                why: e.to_string(),
            })?;
        let pid = child.id();
        let (tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        Ok(Lookup {
            engine,
            image: image.to_string(),
            pid,
            done,
        })
    }

    /// The image, None when the store does not have it.
    pub fn finish(self) -> Result<Option<LocalImage>, LocalError> {
        let program = self.engine.program().to_string();
        let out = match self.done.recv_timeout(TIMEOUT) {
            Ok(r) => r.map_err(|e| LocalError::Spawn {
                program: program.clone(),
                why: e.to_string(),
            })?,
            Err(_) => {
                // Our own child, by its id; the reader thread then ends.
                if let Ok(pid) = i32::try_from(self.pid) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                return Err(LocalError::Timeout {
                    program,
                    image: self.image,
                });
            }
        };
        parse(self.engine, &self.image, &out)
    }
}

/// `ENGINE image inspect IMAGE`, waited for.
pub fn lookup(engine: Engine, image: &str) -> Result<Option<LocalImage>, LocalError> {
    Lookup::start(engine, image)?.finish()
}

fn parse(engine: Engine, image: &str, out: &Output) -> Result<Option<LocalImage>, LocalError> {
    let program = engine.program().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let why = stderr.lines().rev().find(|l| !l.trim().is_empty());
        let why = why.unwrap_or("failed").trim().to_string();
        let lower = why.to_ascii_lowercase();
        // docker: "No such image", podman: "image not known", nerdctl: "no such image"
        // / "not found".
        if lower.contains("no such image")
            || lower.contains("image not known")
            || lower.contains("not found")
        {
            return Ok(None);
        }
        return Err(LocalError::Failed {
            program,
            image: image.to_string(),
            why,
        });
    }
    let invalid = |why: String| LocalError::Invalid {
        program: program.clone(),
        image: image.to_string(),
        why,
    };
    let list: Vec<Inspected> =
        serde_json::from_slice(&out.stdout).map_err(|e| invalid(e.to_string()))?;
    let Some(i) = list.into_iter().next() else {
        return Ok(None);
    };
    if i.os.is_empty() || i.architecture.is_empty() {
        return Err(invalid("no Os or Architecture".into()));
    }
    let variant = i.variant.filter(|v| !v.is_empty());
    let platform = Platform::new(&i.os, &i.architecture, variant.as_deref()).spelling();
    let id = if i.id.is_empty() || i.id.contains(':') {
        i.id
    } else {
        format!("sha256:{}", i.id)
    };
    Ok(Some(LocalImage {
        engine: engine.program(),
        id,
        platform,
        os: i.os,
        architecture: i.architecture,
        variant,
        config: Box::new(i.config.unwrap_or_default()),
    }))
}

/// How long each engine call of [`program_of`] may take, and how much of its output
/// is kept (a tar header and the program's first bytes are all that is needed).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
const CALL_OUTPUT: usize = 64 * 1024;
/// Bytes of the program kept: the ELF header and program headers.
const HEAD_BYTES: usize = 4096;
/// `#!` interpreters followed at most.
const MAX_SCRIPTS: usize = 4;

/// A created container, removed when dropped.
struct Created {
    program: &'static str,
    id: String,
}

impl Drop for Created {
    fn drop(&mut self) {
        let _ = crate::engine::query(
            self.program,
            &["rm", "-f", &self.id],
            CALL_TIMEOUT,
            CALL_OUTPUT,
        );
    }
}

/// The program a local image starts, read through the engine itself: `create` (never
/// started, never pulled), `cp -L` of each candidate path (the engine resolves the
/// layers, symlinks and whiteouts as a container would see them), `rm`.
pub fn program_of(engine: Engine, image: &LocalImage) -> Result<FoundProgram, LocalError> {
    let program = engine.program();
    let fail = |why: String| LocalError::Failed {
        program: program.to_string(),
        image: image.id.clone(),
        why,
    };
    let c = &image.config;
    let Some(q) = crate::registry::layers::Query::from_config(
        c.entrypoint.as_deref(),
        c.cmd.as_deref(),
        c.env.as_deref(),
        c.working_dir.as_deref(),
    ) else {
        return Ok(FoundProgram {
            why: Some("the image config names no Entrypoint or Cmd".into()),
            ..Default::default()
        });
    };
    let a = crate::engine::query(
        program,
        &[
            "create",
            "--pull",
            "never",
            "--entrypoint",
            "/archctl-doctor-never-started",
            "--",
            &image.id,
        ],
        CALL_TIMEOUT,
        CALL_OUTPUT,
    )
    .map_err(fail)?;
    if !a.ok {
        return Err(fail(format!("create: {}", a.error)));
    }
    let id = String::from_utf8_lossy(&a.stdout).trim().to_string();
    if id.is_empty() || id.contains(char::is_whitespace) {
        return Err(fail(format!("create printed no container id: {id:?}")));
    }
    let created = Created { program, id };
    let mut found = FoundProgram {
        program: Some(q.program.clone()),
        ..Default::default()
    };
    let mut name = q.program.clone();
    loop {
        let candidates: Vec<String> = if name.contains('/') {
            let p = if name.starts_with('/') {
                name.clone()
            } else {
                format!("{}/{name}", q.workdir.trim_end_matches('/'))
            };
            vec![p]
        } else {
            q.path
                .iter()
                .filter(|d| d.starts_with('/'))
                .map(|d| format!("{}/{name}", d.trim_end_matches('/')))
                .collect()
        };
        let mut head = None;
        for path in candidates {
            found.resolved.push(path.clone());
            if let Some(h) = copy_head(program, &created.id, &path).map_err(fail)? {
                head = Some((path, h));
                break;
            }
        }
        let Some((path, h)) = head else {
            found.why = Some(format!(
                "{name} is not in the image ({})",
                found.resolved.join(", ")
            ));
            return Ok(found);
        };
        if let Some(line) = h.strip_prefix(b"#!") {
            let line =
                String::from_utf8_lossy(line.split(|b| *b == b'\n').next().unwrap_or_default())
                    .trim()
                    .to_string();
            found.scripts.push(format!("{path}: #!{line}"));
            let mut words = line.split_whitespace();
            let interp = words.next().unwrap_or_default().to_string();
            name = if interp.ends_with("/env") {
                words
                    .find(|w| !w.starts_with('-'))
                    .unwrap_or_default()
                    .to_string()
            } else {
                interp
            };
            if name.is_empty() || found.scripts.len() > MAX_SCRIPTS {
                found.why = Some(format!(
                    "{path}: a #! line archctl does not follow: #!{line}"
                ));
                return Ok(found);
            }
            continue;
        }
        found.binary = Some(path);
        found.head = h;
        return Ok(found);
    }
}

/// The first bytes of `path` in the container, through `ENGINE cp -L` (a tar on
/// stdout); None when the container has no such regular file.
fn copy_head(program: &str, id: &str, path: &str) -> Result<Option<Vec<u8>>, String> {
    let a = crate::engine::query(
        program,
        &["cp", "-L", &format!("{id}:{path}"), "-"],
        CALL_TIMEOUT,
        CALL_OUTPUT,
    )?;
    if a.stdout.is_empty() {
        return Ok(None);
    }
    let mut archive = tar::Archive::new(&a.stdout[..]);
    let Ok(mut entries) = archive.entries() else {
        return Ok(None);
    };
    let Some(Ok(entry)) = entries.next() else {
        return Ok(None);
    };
    if entry.header().entry_type() != tar::EntryType::Regular {
        return Ok(None);
    }
    let mut head = Vec::new();
    use std::io::Read;
    let _ = entry.take(HEAD_BYTES as u64).read_to_end(&mut head);
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn out(code: i32, stdout: &str, stderr: &str) -> Output {
        Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn reads_docker_and_podman_answers() {
        let d = parse(
            Engine::Docker,
            "x",
            &out(
                0,
                r#"[{"Id":"sha256:ab","Os":"linux","Architecture":"arm64","Variant":"v8","RepoTags":["x:latest"]}]"#,
                "",
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (d.id.as_str(), d.platform.as_str()),
            ("sha256:ab", "linux/arm64")
        );
        let p = parse(
            Engine::Podman,
            "x",
            &out(
                0,
                r#"[{"Id":"cd","Os":"linux","Architecture":"amd64"}]"#,
                "",
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (p.id.as_str(), p.platform.as_str()),
            ("sha256:cd", "linux/amd64")
        );
        assert_eq!(p.engine, "podman");
    }

    #[test]
    fn a_missing_image_is_none_and_a_broken_engine_an_error() {
        for (engine, err) in [
            (Engine::Docker, "Error: No such image: x"),
            (
                Engine::Docker,
                "Error response from daemon: no such image: x: No such image: x",
            ),
            (
                Engine::Podman,
                "Error: inspecting object: x: image not known",
            ),
        ] {
            assert_eq!(parse(engine, "x", &out(1, "[]", err)), Ok(None), "{err}");
        }
        let e = parse(
            Engine::Docker,
            "x",
            &out(
                1,
                "[]",
                "Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?",
            ),
        )
        .unwrap_err();
        assert!(e.to_string().contains("Cannot connect"), "{e}");
        assert!(parse(Engine::Docker, "x", &out(0, "not json", "")).is_err());
    }

    #[test]
    fn platform_match_ignores_an_undeclared_variant() {
        let img = |arch: &str, variant: Option<&str>| LocalImage {
            engine: "docker",
            id: "sha256:1".into(),
            platform: String::new(),
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(str::to_string),
            config: Default::default(),
        };
        let p = |s: &str| Platform::parse(s).unwrap();
        assert!(img("arm64", Some("v8")).is_platform(&p("linux/arm64")));
        assert!(img("aarch64", None).is_platform(&p("linux/arm64/v8")));
        assert!(!img("arm64", None).is_platform(&p("linux/amd64")));
        assert!(img("arm", None).is_platform(&p("linux/arm/v6")));
        assert!(!img("arm", Some("v7")).is_platform(&p("linux/arm/v6")));
    }
}
