//! `ab-service`: the A/B backend for a service on an ordinary Linux host.
//!
//! The service's directory (a `files` grant, named by `root`) holds its
//! releases and three links, which are the whole state of the upgrade:
//!
//! ```text
//! releases/1.0.0/      one directory per release (unpacked from its .tar.gz)
//! releases/2.0.0/
//! current   -> releases/1.0.0   what production runs
//! known-good -> releases/1.0.0  the last committed release (what Abort returns to)
//! upgrade   -> releases/2.0.0   the Upgrade Side, while a session has one
//! ```
//!
//! The states of the manual map onto it as follows (every operation is
//! derived from what it finds, so it is idempotent and safe to run again after
//! the runner was killed at any point):
//!
//! - **Split**: production's release becomes `known-good` if nothing is yet;
//!   the Upgrade Side is the release the installer will create.
//! - **Install**: the verified artifact is unpacked into
//!   `releases/.incoming-VERSION`, renamed to `releases/VERSION`, `upgrade`
//!   points at it and the Upgrade-Side instance starts from it on the test
//!   port (`ctl start test`) while production keeps serving.
//! - **Merge**: `current` is switched to the Upgrade Side (an atomic link
//!   swap), the test instance stops and production restarts from the new
//!   release (`ctl restart production`): the short outage of the manual's
//!   Merge.
//! - **Commit**: `known-good` follows `current` (the point of no return),
//!   `upgrade` goes, releases beyond `keep-releases` are pruned.
//! - **Abort**: `current` goes back to `known-good`, production runs it again,
//!   the test instance stops, the Upgrade Side's release is removed.
//! - **Finish**: temporaries removed.
//! - **Partner**: the Upgrade-Side instance: Off (stopped), Booting (running,
//!   not yet listening), Up (healthy), Hung (listening, not healthy), Crashed
//!   (its process died).
//!
//! The site's control command (`ctl`, granted through `exec`) starts, stops,
//! restarts and reports the two instances (`ctl VERB production|test`, exit
//! 0 when it worked; `status` exits 0 running, 3 stopped, 1 crashed). The
//! repository's `examples/acme-service/acme-ctl` is one; on a systemd host it
//! is a three-line wrapper around `systemctl`.

pub mod io;
pub mod ustar;

use duplex_plugin_sdk::prelude::*;
use io::{Ctl, Probe};
use std::io::Read;

/// The target's `with:` block: where the service lives and how it is driven.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Service {
    /// The name of the `files` grant holding `releases/` and the links.
    pub root: String,
    /// The site's control command (absolute path, granted through `exec`).
    pub ctl: String,
    /// Production's base URL (`/health`, `/version` are asked).
    pub production_url: String,
    /// The Upgrade-Side instance's base URL (its test port).
    pub test_url: String,
    /// Releases kept after a commit, the committed one included.
    #[serde(default = "default_keep")]
    #[schemars(range(min = 1))]
    pub keep_releases: u32,
}

fn default_keep() -> u32 {
    2
}

/// `healthy`: the instance at `url` answers `/health` with 200 (and, when
/// given, serves `version` at `/version`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Healthy {
    pub url: String,
    #[serde(default)]
    pub version: Option<String>,
}

/// `port-free`: nothing listens at `url` yet.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PortFree {
    pub url: String,
}

/// `free-space`: the file system of a `files` grant has room for a release.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FreeSpace {
    pub root: String,
    pub min_free_bytes: u64,
}

/// How long one call waits for a probe or the control command; a command
/// still running is polled by the next call.
const PROBE_MS: u32 = 2_000;
const CTL_WAIT_MS: u32 = 3_000;
const POLL_MS: u32 = 100;

pub struct AbService;

impl Plugin for AbService {
    fn manifest() -> Manifest {
        Manifest::new(
            "ab-service",
            env!("CARGO_PKG_VERSION"),
            "A/B upgrade of a service on a Linux host: release slots, a link swap at Merge, the site's restart command",
        )
        .check::<Healthy>("healthy", "The instance at `url` is healthy (and serves `version`)")
        .check::<PortFree>("port-free", "Nothing listens at `url` yet (the test port is free)")
        .check::<FreeSpace>("free-space", "Enough free space for a release")
        .operation::<Service>(HardwareOp::Split, "Choose the Upgrade Side; production's release becomes known-good")
        .operation::<Service>(HardwareOp::Merge, "Switch production to the new release and restart it")
        .operation::<Service>(HardwareOp::Commit, "Make the new release known-good; prune old releases")
        .operation::<Service>(HardwareOp::Abort, "Return production to the known-good release; remove the Upgrade Side")
        .operation::<Service>(HardwareOp::Finish, "Remove temporaries")
        .installer::<Service>("tar.gz", "Unpack a release and start it on the test port")
        .reports_partner()
    }

    fn check(cx: &mut Cx<'_>, name: &str) -> Result<CheckResult, Error> {
        match name {
            "healthy" => {
                let p: Healthy = cx.params()?;
                Ok(healthy(cx, &p))
            }
            "port-free" => {
                let p: PortFree = cx.params()?;
                Ok(match io::probe(cx, &p.url, PROBE_MS) {
                    Probe::Refused => CheckResult::pass(format!("nothing listens at {}", p.url)),
                    Probe::Answered(status, _) => CheckResult::fail(format!(
                        "something already answers at {} (HTTP {status})",
                        p.url
                    )),
                    Probe::NoAnswer(why) => CheckResult::inconclusive(format!("{}: {why}", p.url)),
                })
            }
            "free-space" => {
                let p: FreeSpace = cx.params()?;
                let free = io::free_space(cx, &p.root)?;
                let r = if free >= p.min_free_bytes {
                    CheckResult::pass(format!("{free} bytes free (need {})", p.min_free_bytes))
                } else {
                    CheckResult::fail(format!("only {free} bytes free, need {}", p.min_free_bytes))
                };
                Ok(r.observe("free-bytes", free))
            }
            other => Err(Error::unknown_check(other)),
        }
    }

    fn operate(cx: &mut Cx<'_>, op: HardwareOp) -> Progress {
        let p: Service = match cx.params() {
            Ok(p) => p,
            Err(e) => return Progress::failed(e.to_string(), false),
        };
        let step = match op {
            HardwareOp::Split => split(cx, &p),
            HardwareOp::Merge => merge(cx, &p),
            HardwareOp::Commit => commit(cx, &p),
            HardwareOp::Abort => abort(cx, &p),
            HardwareOp::Finish => finish(cx, &p),
        };
        step.unwrap_or_else(|e| Progress::failed(e.to_string(), true))
    }

    fn install(cx: &mut Cx<'_>, artifact: &Artifact) -> Progress {
        let p: Service = match cx.params() {
            Ok(p) => p,
            Err(e) => return Progress::failed(e.to_string(), false),
        };
        install(cx, &p, artifact).unwrap_or_else(|e| Progress::failed(e.to_string(), true))
    }

    fn partner(cx: &mut Cx<'_>) -> Result<PartnerState, Error> {
        let p: Service = cx.params()?;
        Ok(
            match io::ctl(cx, &p.ctl, "status", "test", "status-test", PROBE_MS)? {
                Ctl::Running => PartnerState::Unknown,
                Ctl::Exited { code: Some(0), .. } => {
                    match io::probe(cx, &format!("{}/health", p.test_url), PROBE_MS) {
                        Probe::Answered(200, _) => PartnerState::Up,
                        Probe::Refused => PartnerState::Booting,
                        _ => PartnerState::Hung,
                    }
                }
                Ctl::Exited { code: Some(3), .. } => PartnerState::Off,
                Ctl::Exited { code: Some(1), .. } => PartnerState::Crashed,
                Ctl::Exited { output, .. } => {
                    return Err(Error::new(format!(
                        "`{} status test` failed: {output}",
                        p.ctl
                    )));
                }
            },
        )
    }
}

duplex_plugin_sdk::export_plugin!(AbService);

fn healthy(cx: &mut Cx<'_>, p: &Healthy) -> CheckResult {
    match io::probe(cx, &format!("{}/health", p.url), PROBE_MS) {
        Probe::Answered(200, _) => {}
        Probe::Answered(status, body) => {
            return CheckResult::fail(format!("{}/health answers HTTP {status}: {body}", p.url));
        }
        Probe::Refused => return CheckResult::fail(format!("nothing listens at {}", p.url)),
        Probe::NoAnswer(why) => return CheckResult::fail(format!("{}/health: {why}", p.url)),
    }
    let Some(want) = &p.version else {
        return CheckResult::pass(format!("{} is healthy", p.url));
    };
    match io::probe(cx, &format!("{}/version", p.url), PROBE_MS) {
        Probe::Answered(200, v) if v == *want => {
            CheckResult::pass(format!("{} is healthy and serves {v}", p.url)).observe("version", v)
        }
        Probe::Answered(200, v) => {
            CheckResult::fail(format!("{} serves {v}, expected {want}", p.url))
                .observe("version", v)
        }
        other => CheckResult::fail(format!("{}/version: {other:?}", p.url)),
    }
}

const CURRENT: &str = "current";
const KNOWN_GOOD: &str = "known-good";
const UPGRADE: &str = "upgrade";
const RELEASES: &str = "releases";
const MARKER: &str = ".duplex-release";

fn release_dir(version: &str) -> Result<String, Error> {
    let ok = !version.is_empty()
        && !version.starts_with('.')
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    if !ok {
        return Err(Error::new(format!(
            "version `{version}` cannot name a release directory"
        )));
    }
    Ok(format!("{RELEASES}/{version}"))
}

fn current(cx: &mut Cx<'_>, p: &Service) -> Result<String, Error> {
    io::link(cx, &p.root, CURRENT)?.ok_or_else(|| {
        Error::new(format!(
            "`{CURRENT}` is missing in `{}`: the service has no production release",
            p.root
        ))
    })
}

fn split(cx: &mut Cx<'_>, p: &Service) -> Result<Progress, Error> {
    let cur = current(cx, p)?;
    if io::link(cx, &p.root, UPGRADE)?.is_none() {
        // A test instance with no Upgrade Side behind it is a leftover.
        match io::ctl(cx, &p.ctl, "stop", "test", "stop-test", CTL_WAIT_MS)? {
            Ctl::Running => {
                return Ok(Progress::pending(
                    50,
                    "stopping a leftover test instance",
                    POLL_MS,
                ));
            }
            Ctl::Exited { code: Some(0), .. } => {}
            Ctl::Exited { output, .. } => return Ok(failed_ctl(p, "stop test", output)),
        }
    }
    if io::link(cx, &p.root, KNOWN_GOOD)?.is_none() {
        io::set_link(cx, &p.root, KNOWN_GOOD, &cur)?;
    }
    Ok(Progress::done(format!(
        "production runs {cur}; the Upgrade Side is split off"
    )))
}

fn install(cx: &mut Cx<'_>, p: &Service, artifact: &Artifact) -> Result<Progress, Error> {
    let dir = release_dir(&artifact.version)?;
    let cur = current(cx, p)?;
    if cur == dir {
        return Ok(Progress::failed(
            format!(
                "{} {} is already what production runs ({dir})",
                artifact.name, artifact.version
            ),
            false,
        ));
    }
    let marker = format!("{dir}/{MARKER}");
    if io::read_text(cx, &p.root, &marker)?.as_deref() != Some(artifact.sha256.as_str()) {
        unpack(cx, p, artifact, &dir)?;
        cx.info(format!(
            "unpacked {} {} into {dir}",
            artifact.name, artifact.version
        ));
    }
    if io::link(cx, &p.root, UPGRADE)?.as_deref() != Some(dir.as_str()) {
        // The test instance may run an earlier Upgrade Side: stop it first.
        match io::ctl(cx, &p.ctl, "stop", "test", "stop-test", CTL_WAIT_MS)? {
            Ctl::Running => {
                return Ok(Progress::pending(60, "stopping the test instance", POLL_MS));
            }
            Ctl::Exited { code: Some(0), .. } => {}
            Ctl::Exited { output, .. } => return Ok(failed_ctl(p, "stop test", output)),
        }
        io::set_link(cx, &p.root, UPGRADE, &dir)?;
    }
    Ok(
        match io::ctl(cx, &p.ctl, "start", "test", "start-test", CTL_WAIT_MS)? {
            Ctl::Running => Progress::pending(80, "starting the Upgrade-Side instance", POLL_MS),
            Ctl::Exited {
                code: Some(0),
                output,
            } => Progress::done(format!(
                "{} {} installed in {dir}; Upgrade-Side instance at {} ({output})",
                artifact.name, artifact.version, p.test_url
            )),
            Ctl::Exited { output, .. } => failed_ctl(p, "start test", output),
        },
    )
}

/// Unpacks the verified artifact beside its final place and renames it
/// there, so a release directory is either absent or complete.
fn unpack(cx: &mut Cx<'_>, p: &Service, artifact: &Artifact, dir: &str) -> Result<(), Error> {
    let incoming = format!("{RELEASES}/.incoming-{}", artifact.version);
    io::remove(cx, &p.root, &incoming)?;
    io::create_dir(cx, &p.root, &incoming)?;
    let bytes = io::artifact_bytes(cx, &artifact.name)?;
    let mut tar = flate2::read::GzDecoder::new(&bytes[..]);
    let bad = |e: std::io::Error| {
        Error::new(format!(
            "{} {}: not a usable .tar.gz: {e}",
            artifact.name, artifact.version
        ))
    };
    let mut files = 0u32;
    while let Some(member) = ustar::next_member(&mut tar).map_err(bad)? {
        match member {
            ustar::Member::Dir { path } => {
                io::create_dir(cx, &p.root, &format!("{incoming}/{path}"))?
            }
            ustar::Member::File { path, mode, data } => {
                if let Some((parent, _)) = path.rsplit_once('/') {
                    io::create_dir(cx, &p.root, &format!("{incoming}/{parent}"))?;
                }
                let at = format!("{incoming}/{path}");
                io::write(cx, &p.root, &at, &data)?;
                io::set_mode(cx, &p.root, &at, mode)?;
                files += 1;
            }
            ustar::Member::Symlink { path, target } => {
                io::symlink(cx, &p.root, &target, &format!("{incoming}/{path}"))?
            }
        }
    }
    // Whatever follows the archive (gzip trailer aside) is not part of it.
    let mut rest = Vec::new();
    tar.read_to_end(&mut rest).map_err(bad)?;
    if files == 0 {
        return Err(Error::new(format!(
            "{} {}: the archive holds no files",
            artifact.name, artifact.version
        )));
    }
    io::write(
        cx,
        &p.root,
        &format!("{incoming}/{MARKER}"),
        artifact.sha256.as_bytes(),
    )?;
    io::remove(cx, &p.root, dir)?;
    io::rename(cx, &p.root, &incoming, dir)
}

fn merge(cx: &mut Cx<'_>, p: &Service) -> Result<Progress, Error> {
    let Some(up) = io::link(cx, &p.root, UPGRADE)? else {
        return Ok(Progress::failed(
            "nothing is installed on the Upgrade Side",
            false,
        ));
    };
    if current(cx, p)? != up {
        io::set_link(cx, &p.root, CURRENT, &up)?;
        cx.info(format!("production switched to {up}"));
    }
    match io::ctl(cx, &p.ctl, "stop", "test", "stop-test", CTL_WAIT_MS)? {
        Ctl::Running => return Ok(Progress::pending(30, "stopping the test instance", POLL_MS)),
        Ctl::Exited { code: Some(0), .. } => {}
        Ctl::Exited { output, .. } => return Ok(failed_ctl(p, "stop test", output)),
    }
    production_runs(cx, p, &up, 60)
}

/// Makes production run `release` (start or restart it as needed); done when
/// it serves that release's version.
fn production_runs(
    cx: &mut Cx<'_>,
    p: &Service,
    release: &str,
    percent: u8,
) -> Result<Progress, Error> {
    let want = io::read_text(cx, &p.root, &format!("{release}/VERSION"))?
        .ok_or_else(|| Error::new(format!("{release} has no VERSION file")))?;
    let seen = io::probe(cx, &format!("{}/version", p.production_url), PROBE_MS);
    if seen == Probe::Answered(200, want.clone()) {
        return Ok(Progress::done(format!(
            "production serves {want} from {release}"
        )));
    }
    let verb = match io::ctl(
        cx,
        &p.ctl,
        "status",
        "production",
        "status-production",
        CTL_WAIT_MS,
    )? {
        Ctl::Running => {
            return Ok(Progress::pending(
                percent,
                "asking production's status",
                POLL_MS,
            ));
        }
        // Running another release: restart it from this one.
        Ctl::Exited { code: Some(0), .. } if matches!(seen, Probe::Answered(200, _)) => "restart",
        // Running but not answering: restarting blind could take down a
        // production that is merely slow; a person decides (retry or abort).
        Ctl::Exited { code: Some(0), .. } => {
            return Ok(Progress::failed(
                format!(
                    "production runs but does not answer {}/version: {seen:?}",
                    p.production_url
                ),
                true,
            ));
        }
        Ctl::Exited { .. } => "start",
    };
    Ok(
        match io::ctl(cx, &p.ctl, verb, "production", "production", CTL_WAIT_MS)? {
            Ctl::Running => {
                Progress::pending(percent + 10, format!("{verb}ing production"), POLL_MS)
            }
            Ctl::Exited {
                code: Some(0),
                output,
            } => {
                cx.info(output);
                match io::probe(cx, &format!("{}/version", p.production_url), PROBE_MS) {
                    Probe::Answered(200, v) if v == want => {
                        Progress::done(format!("production serves {want} from {release}"))
                    }
                    other => Progress::failed(
                        format!("production was {verb}ed but does not serve {want}: {other:?}"),
                        true,
                    ),
                }
            }
            Ctl::Exited { output, .. } => failed_ctl(p, &format!("{verb} production"), output),
        },
    )
}

fn commit(cx: &mut Cx<'_>, p: &Service) -> Result<Progress, Error> {
    let cur = current(cx, p)?;
    if let Some(up) = io::link(cx, &p.root, UPGRADE)?
        && up != cur
    {
        return Ok(Progress::failed(
            format!("production runs {cur}, not the Upgrade Side {up}: merge first"),
            false,
        ));
    }
    io::set_link(cx, &p.root, KNOWN_GOOD, &cur)?;
    io::remove(cx, &p.root, UPGRADE)?;
    let pruned = prune(cx, p, &cur)?;
    Ok(Progress::done(if pruned.is_empty() {
        format!("{cur} is known-good")
    } else {
        format!("{cur} is known-good; pruned {}", pruned.join(", "))
    }))
}

/// Removes releases beyond `keep-releases` (oldest first), never the one
/// production runs.
fn prune(cx: &mut Cx<'_>, p: &Service, keep: &str) -> Result<Vec<String>, Error> {
    let mut releases: Vec<(String, u64)> = io::list(cx, &p.root, RELEASES)?
        .into_iter()
        .filter(|(name, is_dir, _)| *is_dir && !name.starts_with('.'))
        .map(|(name, _, modified)| (format!("{RELEASES}/{name}"), modified))
        .filter(|(path, _)| path != keep)
        .collect();
    releases.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let mut pruned = Vec::new();
    for (path, _) in releases
        .into_iter()
        .skip(p.keep_releases.saturating_sub(1) as usize)
    {
        io::remove(cx, &p.root, &path)?;
        pruned.push(path);
    }
    Ok(pruned)
}

fn abort(cx: &mut Cx<'_>, p: &Service) -> Result<Progress, Error> {
    let cur = current(cx, p)?;
    let good = io::link(cx, &p.root, KNOWN_GOOD)?.unwrap_or_else(|| cur.clone());
    if cur != good {
        io::set_link(cx, &p.root, CURRENT, &good)?;
        cx.info(format!("production switched back to {good}"));
    }
    match io::ctl(cx, &p.ctl, "stop", "test", "stop-test", CTL_WAIT_MS)? {
        Ctl::Running => return Ok(Progress::pending(20, "stopping the test instance", POLL_MS)),
        Ctl::Exited { code: Some(0), .. } => {}
        Ctl::Exited { output, .. } => return Ok(failed_ctl(p, "stop test", output)),
    }
    let running = production_runs(cx, p, &good, 40)?;
    if !running.is_done() {
        return Ok(running);
    }
    if let Some(up) = io::link(cx, &p.root, UPGRADE)? {
        if up != good {
            io::remove(cx, &p.root, &up)?;
        }
        io::remove(cx, &p.root, UPGRADE)?;
    }
    remove_temporaries(cx, p)?;
    Ok(Progress::done(format!(
        "production runs {good} again; the Upgrade Side is removed"
    )))
}

fn finish(cx: &mut Cx<'_>, p: &Service) -> Result<Progress, Error> {
    remove_temporaries(cx, p)?;
    if io::link(cx, &p.root, UPGRADE)?.is_none() {
        match io::ctl(cx, &p.ctl, "stop", "test", "stop-test", CTL_WAIT_MS)? {
            Ctl::Running => {
                return Ok(Progress::pending(50, "stopping the test instance", POLL_MS));
            }
            Ctl::Exited { code: Some(0), .. } => {}
            Ctl::Exited { output, .. } => return Ok(failed_ctl(p, "stop test", output)),
        }
    }
    Ok(Progress::done("temporaries removed"))
}

fn remove_temporaries(cx: &mut Cx<'_>, p: &Service) -> Result<(), Error> {
    for link in [CURRENT, KNOWN_GOOD, UPGRADE] {
        io::remove(cx, &p.root, &format!("{link}.next"))?;
    }
    for (name, _, _) in io::list(cx, &p.root, RELEASES)? {
        if name.starts_with(".incoming-") {
            io::remove(cx, &p.root, &format!("{RELEASES}/{name}"))?;
        }
    }
    Ok(())
}

fn failed_ctl(p: &Service, what: &str, output: String) -> Progress {
    Progress::failed(format!("`{} {what}` failed: {output}", p.ctl), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use duplex_plugin_sdk::testing::{FakeExec, TestHost, context};
    use std::path::Path;

    const CTL: &str = "/usr/local/bin/acme-ctl";

    fn service() -> serde_json::Value {
        serde_json::json!({
            "root": "acme", "ctl": CTL,
            "production-url": "http://127.0.0.1:8080", "test-url": "http://127.0.0.1:8081",
            "keep-releases": 2,
        })
    }

    /// A home with releases/1.0.0 in production, granted read-write.
    fn host(home: &Path) -> TestHost {
        std::fs::create_dir_all(home.join("releases/1.0.0")).unwrap();
        std::fs::write(home.join("releases/1.0.0/VERSION"), "1.0.0\n").unwrap();
        std::os::unix::fs::symlink("releases/1.0.0", home.join("current")).unwrap();
        let mut host = TestHost::new();
        host.grant_dir("acme", home, false);
        host.on_exec(CTL, FakeExec::exit(0, "ok"));
        host
    }

    fn release_tar_gz(version: &str) -> Vec<u8> {
        let mut tar = Vec::new();
        for (name, data) in [
            ("VERSION", format!("{version}\n")),
            ("server.py", "print()\n".into()),
        ] {
            let mut h = [0u8; 512];
            h[..name.len()].copy_from_slice(name.as_bytes());
            h[100..107].copy_from_slice(b"0000644");
            h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
            h[156] = b'0';
            tar.extend_from_slice(&h);
            tar.extend_from_slice(data.as_bytes());
            tar.resize(tar.len().div_ceil(512) * 512, 0);
        }
        tar.extend_from_slice(&[0u8; 1024]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    fn artifact(version: &str) -> Artifact {
        Artifact {
            name: "acme-service".into(),
            version: version.into(),
            sha256: "ab".repeat(32),
            size: 0,
            source: "acme.tar.gz".into(),
        }
    }

    #[test]
    fn split_then_install_unpacks_beside_production_and_starts_the_test_instance() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("acme");
        let mut host = host(&home);
        host.grant_artifact("acme-service", release_tar_gz("2.0.0"));
        let ctx = context(UpgradeState::Split, service());
        assert!(host.operate::<AbService>(&ctx, HardwareOp::Split).is_done());
        let done = host.install::<AbService>(&ctx, &artifact("2.0.0"));
        assert!(done.is_done(), "{done:?}");
        assert_eq!(
            std::fs::read_to_string(home.join("releases/2.0.0/VERSION")).unwrap(),
            "2.0.0\n"
        );
        assert_eq!(
            std::fs::read_link(home.join("upgrade")).unwrap(),
            Path::new("releases/2.0.0")
        );
        assert_eq!(
            std::fs::read_link(home.join("current")).unwrap(),
            Path::new("releases/1.0.0")
        );
        assert_eq!(
            std::fs::read_link(home.join("known-good")).unwrap(),
            Path::new("releases/1.0.0")
        );
        assert!(
            host.exec_args(CTL)
                .contains(&vec!["start".to_string(), "test".to_string()])
        );
        // Run again (after a kill, say): the same release, nothing unpacked twice.
        assert!(
            host.install::<AbService>(&ctx, &artifact("2.0.0"))
                .is_done()
        );
        assert!(!home.join("releases/.incoming-2.0.0").exists());
    }

    #[test]
    fn installing_what_production_runs_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut host = host(&dir.path().join("acme"));
        host.grant_artifact("acme-service", release_tar_gz("1.0.0"));
        let ctx = context(UpgradeState::Split, service());
        match host.install::<AbService>(&ctx, &artifact("1.0.0")) {
            Progress::Failed(f) => {
                assert!(f.message.contains("already what production runs"), "{f:?}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn commit_moves_known_good_and_prunes_beyond_keep_releases() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("acme");
        let mut host = host(&home);
        for v in ["0.8.0", "0.9.0", "2.0.0"] {
            std::fs::create_dir_all(home.join("releases").join(v)).unwrap();
        }
        std::fs::remove_file(home.join("current")).unwrap();
        std::os::unix::fs::symlink("releases/2.0.0", home.join("current")).unwrap();
        std::os::unix::fs::symlink("releases/2.0.0", home.join("upgrade")).unwrap();
        let ctx = context(UpgradeState::Commit, service());
        let done = host.operate::<AbService>(&ctx, HardwareOp::Commit);
        assert!(done.is_done(), "{done:?}");
        assert_eq!(
            std::fs::read_link(home.join("known-good")).unwrap(),
            Path::new("releases/2.0.0")
        );
        assert!(!home.join("upgrade").exists());
        let mut left: Vec<String> = std::fs::read_dir(home.join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.contains(&"2.0.0".to_string()), "{left:?}");
    }
}
