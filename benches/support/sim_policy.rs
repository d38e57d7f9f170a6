//! The benchmarks' policy: sim-duplex with no delays and one call per
//! operation, no gates, one software item (the runner's own cost).

use std::path::{Path, PathBuf};

pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Write the policy into `dir` and return its path.
pub fn policy_file(dir: &Path) -> PathBuf {
    let root = Path::new(ROOT);
    let sums = std::fs::read_to_string(root.join("plugins/dist/SHA256SUMS")).unwrap();
    let digest = |name: &str| {
        sums.lines()
            .find(|l| l.ends_with(&format!(" {name}.wasm")))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let text = format!(
        "apiVersion: duplex.dev/v1alpha1
kind: UpgradePolicy
metadata: {{name: bench}}
spec:
  target: {{name: bench, plugin: sim-duplex, with: {{time-scale: 0, steps: 1}}}}
  software:
    - {{name: acme-app, version: '2.4.1', source: {app}, sha256: 5df80e6b86efa50d1aaf17c7d4aa5ead9cc6eafc4e09a13563af898770475fb5}}
  plugins:
    - {{name: sim-duplex, source: {dist}/sim-duplex.wasm, sha256: {d}, capabilities: {{storage: true}}}}
",
        app = root.join("policies/artifacts/acme-app-2.4.1.pkg").display(),
        dist = root.join("plugins/dist").display(),
        d = digest("sim-duplex"),
    );
    let path = dir.join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    path
}
