//! Components built against the first edition of `duplex:plugin@0.1.0`
//! (host + storage only; tests/data/plugins-0.1.0) load and work unchanged
//! with today's host, which has added exec, http, files and artifacts to the
//! package: a whole session of the simulator commits with them.

mod support;

use support::{GATES, Site, repo_root};

fn old_digest(name: &str) -> String {
    let sums =
        std::fs::read_to_string(repo_root().join("tests/data/plugins-0.1.0/SHA256SUMS")).unwrap();
    sums.lines()
        .find(|l| l.ends_with(&format!(" {name}.wasm")))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string()
}

#[test]
fn the_components_of_the_first_edition_still_load_and_commit_a_session() {
    let site = Site::new();
    let path = site.policy("", GATES);
    // Swap the plugins of today's dist for the old builds.
    let dist = repo_root().join("plugins/dist");
    let old = repo_root().join("tests/data/plugins-0.1.0");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for name in ["sim-duplex", "sim-checks"] {
        text = text
            .replace(
                &format!("{}/{name}.wasm", dist.display()),
                &format!("{}/{name}.wasm", old.display()),
            )
            .replace(&support::plugin_digest(name), &old_digest(name));
        let bytes = std::fs::read(old.join(format!("{name}.wasm"))).unwrap();
        assert_eq!(
            support::sha256_hex(&bytes),
            old_digest(name),
            "{name} was rebuilt"
        );
    }
    std::fs::write(&path, text).unwrap();

    let inspect = site.duplex(&[
        "plugin",
        "inspect",
        old.join("sim-duplex.wasm").to_str().unwrap(),
    ]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);

    let out = site.apply(&[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(site.states(), support::FORWARD);
}
