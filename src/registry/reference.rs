//! Docker image references, normalised as Docker does (`alpine` is
//! `docker.io/library/alpine:latest`, served by `registry-1.docker.io`).

use std::fmt;

use super::RegistryError;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// What the user typed.
    pub input: String,
    /// Registry name as Docker spells it (`docker.io`, `ghcr.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path (`library/alpine`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parse and normalise a reference with Docker's grammar (distribution/reference):
    /// `[DOMAIN[:PORT]/]PATH[:TAG][@ALGO:HEX]`. Hand-written rather than oci-spec's
    /// `Reference`, whose regex costs ~40 ms to compile on every run — archctl stands in
    /// front of every `docker run`.
    pub fn parse(input: &str) -> Result<ImageRef, RegistryError> {
        let bad = |why: &str| RegistryError::BadReference {
            input: input.to_string(),
            why: why.to_string(),
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > 4096 {
            return Err(bad("too long"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (s, None),
        };
        if let Some(d) = digest {
            let hex = d
                .strip_prefix("sha256:")
                .ok_or_else(|| bad("only sha256 digests are supported"))?;
            if hex.len() != 64 || !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(bad("a sha256 digest is 64 lower-case hex digits"));
            }
        }
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                && t.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
            if !ok {
                return Err(bad(
                    "a tag is up to 128 of [A-Za-z0-9_.-], not starting with . or -",
                ));
            }
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, p))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (Some(first), p)
            }
            _ => (None, name),
        };
        if let Some(d) = domain
            && !valid_domain(d)
        {
            return Err(bad("invalid registry host"));
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad("repository names must be lower case"));
        }
        if path.is_empty() || !path.split('/').all(valid_component) {
            return Err(bad(
                "path components are [a-z0-9] runs separated by '.', '_', '__' or '-'",
            ));
        }
        let registry = match domain {
            None | Some("index.docker.io" | "registry-1.docker.io" | "docker.io") => "docker.io",
            Some(d) => d,
        };
        let repository = if registry == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        if registry.len() + repository.len() + 1 > 255 {
            return Err(bad("name longer than 255 characters"));
        }
        let tag = match (tag, digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(ImageRef {
            input: input.to_string(),
            registry: registry.to_string(),
            repository,
            tag,
            digest: digest.map(str::to_string),
        })
    }

    /// Host (and port) that serves the registry API.
    pub fn endpoint(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// Is the registry on this machine (127.0.0.0/8, ::1, localhost)?
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.registry)
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// A registry host: DNS labels or an IPv4 address, or a bracketed IPv6 address, with an
/// optional port.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => {
                if h.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                // Only a port may follow the address.
                match p.strip_prefix(':') {
                    Some(port) => (None, Some(port)),
                    None if p.is_empty() => (None, None),
                    None => return false,
                }
            }
            None => return false,
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    host.is_none_or(|h| {
        !h.is_empty()
            && h.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            })
    })
}

/// `host[:port]` names a loopback address.
pub fn is_loopback_host(hostport: &str) -> bool {
    let host = split_host(hostport);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// The host of `host[:port]` (brackets of an IPv6 literal removed).
pub fn split_host(hostport: &str) -> &str {
    if let Some(rest) = hostport.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|c| c.is_ascii_digit()) && !h.contains(':') => h,
        _ => hostport,
    }
}

impl fmt::Display for ImageRef {
    /// The resolved reference: `docker.io/library/alpine:3.20`,
    /// `docker.io/library/alpine@sha256:...` (tag kept when both are given).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_docker() {
        let cases = [
            (
                "alpine",
                "docker.io/library/alpine:latest",
                "registry-1.docker.io",
            ),
            (
                "alpine:3.20",
                "docker.io/library/alpine:3.20",
                "registry-1.docker.io",
            ),
            (
                "library/alpine",
                "docker.io/library/alpine:latest",
                "registry-1.docker.io",
            ),
            (
                "docker.io/library/alpine",
                "docker.io/library/alpine:latest",
                "registry-1.docker.io",
            ),
            (
                "index.docker.io/foo/bar",
                "docker.io/foo/bar:latest",
                "registry-1.docker.io",
            ),
            ("ghcr.io/o/r:t", "ghcr.io/o/r:t", "ghcr.io"),
            (
                "127.0.0.1:5000/x/y:tag",
                "127.0.0.1:5000/x/y:tag",
                "127.0.0.1:5000",
            ),
            (
                "localhost:5000/x",
                "localhost:5000/x:latest",
                "localhost:5000",
            ),
            (
                "[::1]:5000/x/y_z__w:1.0",
                "[::1]:5000/x/y_z__w:1.0",
                "[::1]:5000",
            ),
            (
                "Registry.Example.com/a-b/c.d:v1",
                "Registry.Example.com/a-b/c.d:v1",
                "Registry.Example.com",
            ),
        ];
        for (input, want, endpoint) in cases {
            let r = ImageRef::parse(input).unwrap();
            assert_eq!(r.to_string(), want, "{input}");
            assert_eq!(r.endpoint(), endpoint, "{input}");
        }
        let r = ImageRef::parse(&format!("docker.io/library/alpine@{D}")).unwrap();
        assert_eq!(r.reference(), D);
        assert_eq!(r.tag, None);
        assert_eq!(r.to_string(), format!("docker.io/library/alpine@{D}"));
    }

    #[test]
    fn rejects_invalid_references_naming_them() {
        for bad in [
            "",
            "UPPER",
            "a//b",
            "x:y:z",
            "alpine@sha256:abc",
            "-x",
            "alpine:",
            "a/b_",
            "a..b",
            "my-host:5000:6/x",
            "alpine:-tag",
            "ALPINE:3",
            "[::1/x",
        ] {
            let e = ImageRef::parse(bad).unwrap_err();
            assert!(
                matches!(e, RegistryError::BadReference { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains(&format!("\"{bad}\"")), "{e}");
        }
        let e = ImageRef::parse("Alpine").unwrap_err().to_string();
        assert!(e.contains("lower case"), "{e}");
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:5000",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "10.0.0.1:5000",
            "ghcr.io",
            "docker.io",
            "[fe80::1]:80",
            "localhost.example.com",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
