//! Container engines (docker, podman, nerdctl): finding one, splitting a `run` command
//! line into engine options, image and command, and building the command archctl
//! replaces itself with.

use std::{
    ffi::{OsStr, OsString},
    process::{Command, Stdio},
    time::Duration,
};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("unknown engine \"{0}\": use docker, podman or nerdctl")]
    Unknown(String),
    #[error("no container engine found: none of docker, podman, nerdctl is on PATH")]
    NotFound,
    #[error("no image given: write `archctl run [ENGINE-OPTIONS...] IMAGE [COMMAND...]`")]
    NoImage,
    #[error("option {0} needs a value")]
    MissingValue(String),
}

impl EngineError {
    pub fn hint(&self) -> Option<String> {
        match self {
            EngineError::NotFound => Some(format!(
                "install {}, or name one with --engine",
                Engine::ALL.map(|e| e.program()).join(", ")
            )),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Docker,
    Podman,
    Nerdctl,
}

impl Engine {
    /// Every engine, in the order `detect` looks for them on PATH.
    pub const ALL: [Engine; 3] = [Engine::Docker, Engine::Podman, Engine::Nerdctl];

    pub fn parse(s: &str) -> Result<Engine, EngineError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "docker" => Ok(Engine::Docker),
            "podman" => Ok(Engine::Podman),
            "nerdctl" => Ok(Engine::Nerdctl),
            other => Err(EngineError::Unknown(other.to_string())),
        }
    }

    pub fn program(&self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
            Engine::Nerdctl => "nerdctl",
        }
    }

    /// The `run` option that makes this engine fetch the chosen platform when the image
    /// it has cached under the name is of another platform; None when the engine does
    /// so by itself. Found with the engines (tests/engine.rs holds them to it):
    ///
    /// - dockerd (20.10) treats a cached image of another platform than `--platform` as
    ///   missing: it pulls, and a failed pull is an error. Nothing to add.
    /// - podman (4.3) turns its `missing` policy into `newer` for an explicit platform
    ///   and, when that pull fails (TLS, credentials, rate limits), runs the cached image
    ///   of the other platform after a WARNING. `--pull=always` makes the pull happen
    ///   and a failed pull an error; it costs what the pull would have cost anyway.
    /// - nerdctl: `--pull=always`, the same guarantee by its documented options.
    pub fn pull_for_other_platform(&self) -> Option<&'static str> {
        match self {
            Engine::Docker => None,
            Engine::Podman | Engine::Nerdctl => Some("--pull=always"),
        }
    }

    /// `ARCHCTL_ENGINE`, else the first of docker, podman, nerdctl on PATH.
    pub fn detect() -> Result<Engine, EngineError> {
        if let Ok(e) = std::env::var("ARCHCTL_ENGINE")
            && !e.is_empty()
        {
            return Engine::parse(&e);
        }
        Engine::ALL
            .into_iter()
            .find(|e| on_path(e.program()))
            .ok_or(EngineError::NotFound)
    }
}

/// Is `program` an executable file in a PATH directory?
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            std::fs::metadata(d.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Long options of `docker run` / `podman run` / `nerdctl run` that take a value (as
/// the next argument, unless written `--opt=value`).
const LONG_WITH_VALUE: &[&str] = &[
    "add-host",
    "annotation",
    "arch",
    "attach",
    "authfile",
    "blkio-weight",
    "blkio-weight-device",
    "cap-add",
    "cap-drop",
    "cert-dir",
    "cgroup-parent",
    "cgroupns",
    "cgroups",
    "chrootdirs",
    "cidfile",
    "conmon-pidfile",
    "cpu-count",
    "cpu-percent",
    "cpu-period",
    "cpu-quota",
    "cpu-rt-period",
    "cpu-rt-runtime",
    "cpu-shares",
    "cpus",
    "cpuset-cpus",
    "cpuset-mems",
    "creds",
    "decryption-key",
    "detach-keys",
    "device",
    "device-cgroup-rule",
    "device-read-bps",
    "device-read-iops",
    "device-write-bps",
    "device-write-iops",
    "dns",
    "dns-opt",
    "dns-option",
    "dns-search",
    "domainname",
    "entrypoint",
    "env",
    "env-file",
    "expose",
    "gidmap",
    "gpus",
    "group-add",
    "group-entry",
    "health-cmd",
    "health-interval",
    "health-retries",
    "health-start-interval",
    "health-start-period",
    "health-timeout",
    "hooks-dir",
    "hostname",
    "hostuser",
    "image-volume",
    "init-path",
    "io-maxbandwidth",
    "io-maxiops",
    "ip",
    "ip6",
    "ipc",
    "isolation",
    "kernel-memory",
    "label",
    "label-file",
    "link",
    "link-local-ip",
    "log-driver",
    "log-opt",
    "mac-address",
    "memory",
    "memory-reservation",
    "memory-swap",
    "memory-swappiness",
    "mount",
    "name",
    "net",
    "net-alias",
    "network",
    "network-alias",
    "oom-score-adj",
    "os",
    "passwd-entry",
    "personality",
    "pid",
    "pidfile",
    "pids-limit",
    "platform",
    "pod",
    "pod-id-file",
    "preserve-fds",
    "publish",
    "pull",
    "rdt-class",
    "requires",
    "restart",
    "retry",
    "retry-delay",
    "runtime",
    "sdnotify",
    "seccomp-policy",
    "secret",
    "security-opt",
    "shm-size",
    "shm-size-systemd",
    "stop-signal",
    "stop-timeout",
    "storage-opt",
    "subgidname",
    "subuidname",
    "sysctl",
    "timezone",
    "tmpfs",
    "uidmap",
    "ulimit",
    "umask",
    "unsetenv",
    "user",
    "userns",
    "uts",
    "variant",
    "volume",
    "volume-driver",
    "volumes-from",
    "workdir",
];

/// Short options that take a value.
const SHORT_WITH_VALUE: &[char] = &['a', 'c', 'e', 'h', 'l', 'm', 'p', 'u', 'v', 'w'];

/// A `run` command line, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// Engine options, in order, without `--platform`.
    pub options: Vec<OsString>,
    /// `--platform` given by the user, which wins over archctl's choice.
    pub platform: Option<String>,
    /// `--pull` given by the user (kept in `options`): archctl then adds no pull policy.
    pub pull: Option<String>,
    pub image: String,
    pub command: Vec<OsString>,
}

/// Is `a` an option, and does it take the next argument as its value?
/// None: not an option (the image). Clusters like `-it` or `-p8080:80`: a value-taking
/// letter at the end takes the next argument.
fn option_arity(a: &str) -> Option<bool> {
    if let Some(long) = a.strip_prefix("--") {
        return Some(!long.contains('=') && LONG_WITH_VALUE.contains(&long));
    }
    let letters = a.strip_prefix('-').filter(|l| !l.is_empty())?;
    let last = letters.chars().last()?;
    let first_value = letters.chars().position(|c| SHORT_WITH_VALUE.contains(&c));
    Some(SHORT_WITH_VALUE.contains(&last) && first_value == Some(letters.chars().count() - 1))
}

/// Split `[OPTIONS...] IMAGE [COMMAND [ARG...]]` as the engine would. Options are kept
/// exactly as written (`--tls-verify=false` is not `--tls-verify false`), except
/// `--platform`, which archctl sets itself.
pub fn parse_run_args(args: &[OsString]) -> Result<RunArgs, EngineError> {
    let mut options = Vec::new();
    let mut platform = None;
    let mut pull = None;
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        let a = arg.to_string_lossy().into_owned();
        if a == "--" {
            i += 1;
            break;
        }
        let Some(takes_next) = option_arity(&a) else {
            break;
        };
        let value = if takes_next {
            i += 1;
            Some(
                args.get(i)
                    .ok_or_else(|| EngineError::MissingValue(a.clone()))?
                    .clone(),
            )
        } else {
            None
        };
        if a == "--platform" || a.starts_with("--platform=") {
            platform = value
                .map(|v| v.to_string_lossy().into_owned())
                .or_else(|| a.split_once('=').map(|(_, v)| v.to_string()));
        } else {
            if a == "--pull" || a.starts_with("--pull=") {
                pull = value
                    .as_ref()
                    .map(|v| v.to_string_lossy().into_owned())
                    .or_else(|| a.split_once('=').map(|(_, v)| v.to_string()));
            }
            options.push(arg.clone());
            options.extend(value);
        }
        i += 1;
    }
    let image = args
        .get(i)
        .ok_or(EngineError::NoImage)?
        .to_string_lossy()
        .into_owned();
    Ok(RunArgs {
        options,
        platform,
        pull,
        image,
        command: args[i + 1..].to_vec(),
    })
}

/// `<engine> run --platform P [PULL] <options> <image> <command...>`, PULL being the
/// pull policy archctl adds (see [`Engine::pull_for_other_platform`]).
pub fn command_line(
    engine: Engine,
    platform: &str,
    pull: Option<&str>,
    run: &RunArgs,
) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        engine.program().into(),
        "run".into(),
        "--platform".into(),
        platform.into(),
    ];
    v.extend(pull.map(OsString::from));
    v.extend(run.options.iter().cloned());
    v.push(run.image.clone().into());
    v.extend(run.command.iter().cloned());
    v
}

/// A command line as a shell would need it quoted (for `--dry-run`).
pub fn shell_quote(args: &[OsString]) -> String {
    args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

fn quote(a: &OsStr) -> String {
    let s = a.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn splits_options_image_and_command() {
        let r = parse_run_args(&os(&[
            "-it",
            "--rm",
            "-v",
            "/a:/b",
            "-e=X=1",
            "--name",
            "web",
            "-p8080:80",
            "--platform",
            "linux/arm64",
            "--network=host",
            "nginx:1.27",
            "sh",
            "-c",
            "echo hi",
        ]))
        .unwrap();
        assert_eq!(r.image, "nginx:1.27");
        assert_eq!(r.platform.as_deref(), Some("linux/arm64"));
        assert_eq!(r.command, os(&["sh", "-c", "echo hi"]));
        assert_eq!(
            r.options,
            os(&[
                "-it",
                "--rm",
                "-v",
                "/a:/b",
                "-e=X=1",
                "--name",
                "web",
                "-p8080:80",
                "--network=host"
            ])
        );
        assert_eq!(r.pull, None);
        let cl = command_line(Engine::Docker, "linux/amd64", None, &r);
        assert_eq!(
            shell_quote(&cl[..5]),
            "docker run --platform linux/amd64 -it"
        );
        assert_eq!(shell_quote(&cl[cl.len() - 3..]), "sh -c 'echo hi'");
    }

    #[test]
    fn value_taking_short_flag_at_end_of_cluster() {
        let r = parse_run_args(&os(&["-ite", "A=1", "alpine"])).unwrap();
        assert_eq!(r.options, os(&["-ite", "A=1"]));
        assert_eq!(r.image, "alpine");
        let r = parse_run_args(&os(&[
            "--tls-verify=false",
            "--platform=linux/arm64",
            "alpine",
        ]))
        .unwrap();
        assert_eq!(r.options, os(&["--tls-verify=false"]));
        assert_eq!(r.platform.as_deref(), Some("linux/arm64"));
        let r = parse_run_args(&os(&["--", "alpine", "--rm"])).unwrap();
        assert_eq!(r.image, "alpine");
        assert_eq!(r.command, os(&["--rm"]));
    }

    #[test]
    fn the_users_pull_policy_is_seen_and_kept() {
        for (args, want) in [
            (&["--pull", "never", "alpine"][..], "never"),
            (&["--rm", "--pull=missing", "alpine"][..], "missing"),
        ] {
            let r = parse_run_args(&os(args)).unwrap();
            assert_eq!(r.pull.as_deref(), Some(want));
            assert_eq!(r.options, os(&args[..args.len() - 1]));
        }
        let r = parse_run_args(&os(&["--rm", "alpine", "--pull=x"])).unwrap();
        assert_eq!(r.pull, None, "an argument of the command is not an option");
        let cl = command_line(Engine::Podman, "linux/amd64", Some("--pull=always"), &r);
        assert_eq!(
            shell_quote(&cl),
            "podman run --platform linux/amd64 --pull=always --rm alpine --pull=x"
        );
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(parse_run_args(&os(&["--rm"])), Err(EngineError::NoImage));
        assert_eq!(
            parse_run_args(&os(&["--name"])),
            Err(EngineError::MissingValue("--name".into()))
        );
        assert!(Engine::parse("lxc").is_err());
        assert_eq!(Engine::parse("Podman").unwrap(), Engine::Podman);
    }
}

/// What an engine query ([`query`]) said.
#[derive(Debug)]
pub struct Answer {
    /// It exited 0.
    pub ok: bool,
    /// Its stdout, at most the limit.
    pub stdout: Vec<u8>,
    /// The first non-empty line of its stderr (or `failed`), when not ok.
    pub error: String,
}

/// Run `program args...` (an engine's CLI) with a deadline, keeping at most `limit`
/// bytes of stdout and of stderr: a hung daemon or an endless answer cannot hang
/// archctl. A child still writing past `limit` finds its pipe closed.
pub fn query(
    program: &str,
    args: &[&str],
    timeout: Duration,
    limit: usize,
) -> Result<Answer, String> {
    use std::io::Read;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let take = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = p {
                let _ = p.take(limit as u64).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = take(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = take(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = crate::verify::wait_bounded(&mut child, timeout);
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let status = status.map_err(|e| format!("{program}: {e}"))?;
    let error = if status.success() {
        String::new()
    } else {
        String::from_utf8_lossy(&stderr)
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("failed")
            .trim()
            .to_string()
    };
    Ok(Answer {
        ok: status.success(),
        stdout,
        error,
    })
}
