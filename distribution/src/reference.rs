//! `oci://REGISTRY[:PORT]/REPOSITORY[:TAG][@sha256:<64 hex>]`: where a plugin
//! lives in an OCI registry. A policy's reference must carry the manifest
//! digest ([`Reference::pinned`]); a tag is only a label for people.

use std::fmt;

/// The scheme of a plugin source in a registry.
pub const SCHEME: &str = "oci://";

/// Whether a plugin `source` names an OCI registry (rather than a file).
pub fn is_oci(source: &str) -> bool {
    source.starts_with(SCHEME)
}

/// A parsed `oci://` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`, as written.
    pub registry: String,
    /// The repository path (`team/plugin`), lower case.
    pub repository: String,
    pub tag: Option<String>,
    /// The manifest digest's 64 lower-case hex digits.
    pub digest: Option<String>,
}

/// Why a reference is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("`{0}` is not an OCI reference: it must start with `oci://`")]
    Scheme(String),
    #[error(
        "`{reference}` is not a valid OCI reference: {why} (expected `oci://REGISTRY[:PORT]/REPOSITORY[:TAG]@sha256:<64 hex digits>`)"
    )]
    Malformed { reference: String, why: String },
    #[error(
        "`{0}` is not pinned: a registry may move a tag, so a plugin from a registry is named by its manifest digest; append `@sha256:<64 hex digits>` (`duplex plugin push` prints the pinned reference)"
    )]
    NotPinned(String),
}

impl Reference {
    /// Parses a reference; a digest is optional here (`duplex plugin push`
    /// takes an unpinned one), see [`Reference::pinned`].
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        let bad = |why: &str| ReferenceError::Malformed {
            reference: text.to_string(),
            why: why.to_string(),
        };
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| ReferenceError::Scheme(text.to_string()))?;
        let (name, digest) = match rest.split_once('@') {
            Some((name, digest)) => {
                let hex = digest.strip_prefix("sha256:").ok_or_else(|| {
                    bad(&format!(
                        "the digest `{digest}` is not `sha256:` followed by 64 hex digits"
                    ))
                })?;
                if hex.len() != 64
                    || !hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return Err(bad(&format!(
                        "the digest `{digest}` is not `sha256:` followed by 64 lower-case hex digits"
                    )));
                }
                (name, Some(hex.to_string()))
            }
            None => (rest, None),
        };
        let (registry, path) = name
            .split_once('/')
            .ok_or_else(|| bad("it names no repository after the registry"))?;
        if registry.is_empty() {
            return Err(bad("the registry is empty"));
        }
        let (host, port) = if registry.starts_with('[') {
            match registry.split_once(']') {
                Some((h, "")) => (&registry[..=h.len()], None),
                Some((h, rest)) => match rest.strip_prefix(':') {
                    Some(p) => (&registry[..=h.len()], Some(p)),
                    None => {
                        return Err(bad(
                            "an IPv6 address in brackets may only be followed by `:PORT`",
                        ));
                    }
                },
                None => return Err(bad("an IPv6 address's `[` is not closed")),
            }
        } else {
            match registry.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (registry, None),
            }
        };
        if let Some(port) = port
            && (port.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(bad(&format!(
                "the port `{port}` is not a number up to 65535"
            )));
        }
        let host_ok = if let Some(v6) = host.strip_prefix('[') {
            v6.strip_suffix(']')
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
        } else {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        };
        if !host_ok {
            return Err(bad(&format!(
                "the registry host `{host}` is not a host name or address"
            )));
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) => (repo, Some(tag)),
            None => (path, None),
        };
        if let Some(tag) = tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
                && !tag.starts_with(['.', '-']);
            if !ok {
                return Err(bad(&format!(
                    "the tag `{tag}` is not 1 to 128 letters, digits, `_`, `.` or `-` (not starting with `.` or `-`)"
                )));
            }
        }
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if repository.is_empty() || !repository.split('/').all(component_ok) {
            return Err(bad(&format!(
                "the repository `{repository}` is not lower-case path components of letters, digits, `.`, `_` or `-`"
            )));
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// Parses a reference that must carry its manifest digest (a policy's).
    pub fn parse_pinned(text: &str) -> Result<Reference, ReferenceError> {
        let r = Reference::parse(text)?;
        r.pinned()?;
        Ok(r)
    }

    /// The manifest digest's hex digits, or why there is none.
    pub fn pinned(&self) -> Result<&str, ReferenceError> {
        self.digest
            .as_deref()
            .ok_or_else(|| ReferenceError::NotPinned(self.to_string()))
    }

    /// The host without the port (and without an IPv6 address's brackets).
    pub fn host(&self) -> &str {
        let r = self.registry.as_str();
        if let Some(v6) = r.strip_prefix('[') {
            return v6.split_once(']').map_or(v6, |(a, _)| a);
        }
        r.rsplit_once(':').map_or(r, |(h, _)| h)
    }

    /// Whether the registry is on this machine's loopback (`localhost`,
    /// `127.0.0.0/8`, `::1`): the only registries spoken to over plain HTTP.
    pub fn is_loopback(&self) -> bool {
        let host = self.host();
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The same reference with `digest` (hex) as its manifest digest.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@sha256:{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_and_prints() {
        for text in [
            format!("oci://127.0.0.1:5000/team/check@sha256:{D}"),
            format!("oci://ghcr.io/acme/probe:1.2.0@sha256:{D}"),
            format!("oci://[::1]:5000/p@sha256:{D}"),
            "oci://localhost:5000/p:v1".to_string(),
        ] {
            let r = Reference::parse(&text).unwrap();
            assert_eq!(r.to_string(), text);
        }
        let r = Reference::parse(&format!("oci://[::1]:5000/p@sha256:{D}")).unwrap();
        assert_eq!(r.host(), "::1");
        assert!(r.is_loopback());
        let r = Reference::parse("oci://localhost:5000/a/b:t").unwrap();
        assert_eq!((r.host(), r.repository.as_str()), ("localhost", "a/b"));
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert!(r.is_loopback());
        assert!(!Reference::parse("oci://ghcr.io/a").unwrap().is_loopback());
        assert!(Reference::parse("oci://127.9.0.1/a").unwrap().is_loopback());
    }

    #[test]
    fn refuses() {
        let malformed = [
            "oci://",
            "oci://host",
            "oci:///repo",
            "oci://host/Repo",
            "oci://host/repo:",
            "oci://host:99999/repo",
            "oci://host/repo@sha256:abc",
            &format!("oci://host/repo@sha512:{D}"),
            &format!("oci://host/repo@sha256:{}", D.to_uppercase()),
            "oci://ho st/repo",
            "oci://host/repo:-x",
        ];
        for text in malformed {
            assert!(
                matches!(
                    Reference::parse(text),
                    Err(ReferenceError::Malformed { .. })
                ),
                "{text}: {:?}",
                Reference::parse(text)
            );
        }
        assert!(matches!(
            Reference::parse("https://x/y"),
            Err(ReferenceError::Scheme(_))
        ));
        assert!(matches!(
            Reference::parse_pinned("oci://host/repo:1.0"),
            Err(ReferenceError::NotPinned(_))
        ));
    }
}
