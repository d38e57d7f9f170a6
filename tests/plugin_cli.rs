//! Black-box tests of `duplex plugin inspect` and `duplex plugin verify`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dist(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(file)
}

fn pinned(file: &str) -> String {
    let sums = std::fs::read_to_string(dist("SHA256SUMS")).unwrap();
    sums.lines()
        .find_map(|l| l.strip_suffix(&format!("  {file}")).map(str::to_string))
        .unwrap()
}

fn duplex(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_duplex"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn inspect_shows_what_a_plugin_provides_with_each_schema_and_its_digest() {
    let file = dist("sim-checks.wasm");
    let o = duplex(&["plugin", "inspect", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("sim-checks 0.1.0"), "{out}");
    assert!(
        out.contains(&format!("sha256:    {}", pinned("sim-checks.wasm"))),
        "{out}"
    );
    assert!(out.contains("contract:  duplex:plugin@0.1.0"), "{out}");
    assert!(
        out.contains("  free-space  Enough free space on the Upgrade Side"),
        "{out}"
    );
    assert!(out.contains("\"min-free-bytes\""), "{out}");
    assert!(out.contains("operations: none"), "{out}");

    let o = duplex(&[
        "--output",
        "json",
        "plugin",
        "inspect",
        dist("sim-duplex.wasm").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["sha256"], pinned("sim-duplex.wasm").as_str());
    assert_eq!(v["contract"], "duplex:plugin@0.1.0");
    assert_eq!(v["plugin"]["name"], "sim-duplex");
    assert_eq!(v["plugin"]["reportsPartner"], true);
    let ops: Vec<&str> = v["plugin"]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["split", "merge", "commit", "abort", "finish"]);
    assert!(v["plugin"]["operations"][0]["paramsSchema"]["properties"]["faults"].is_object());
    // camelCase keys, as in every other JSON output (the schemas inside are
    // the plugin's own, kebab-case parameters and all).
    fn snake_keys(v: &Value, at: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k.contains('_') {
                        out.push(format!("{at}/{k}"));
                    }
                    if k != "paramsSchema" {
                        snake_keys(v, &format!("{at}/{k}"), out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| snake_keys(v, at, out)),
            _ => {}
        }
    }
    let mut snake = Vec::new();
    snake_keys(&v, "", &mut snake);
    assert!(snake.is_empty(), "snake_case keys: {snake:?}");
}

#[test]
fn inspect_refuses_what_is_not_a_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let o = duplex(&["plugin", "inspect", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is not a valid WebAssembly component"),
        "{}",
        stderr(&o)
    );

    let o = duplex(&["--output", "json", "plugin", "inspect", "/nonexistent.wasm"]);
    assert_eq!(o.status.code(), Some(2));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("cannot read /nonexistent.wasm")
    );
}

#[test]
fn verify_exits_0_on_match_1_on_mismatch_2_when_unreadable() {
    let file = dist("sim-duplex.wasm");
    let f = file.to_str().unwrap();
    let good = pinned("sim-duplex.wasm");

    let o = duplex(&["plugin", "verify", f, "--sha256", &good.to_uppercase()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains(&good));

    let wrong = "0".repeat(64);
    let o = duplex(&["plugin", "verify", f, "--sha256", &wrong]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(&good) && err.contains(&wrong), "{err}");

    let o = duplex(&[
        "--output", "json", "plugin", "verify", f, "--sha256", &wrong,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (v["matches"].as_bool(), v["actual"].as_str()),
        (Some(false), Some(good.as_str()))
    );
    assert_eq!(v["expected"], wrong.as_str());

    let o = duplex(&["plugin", "verify", "/nonexistent.wasm", "--sha256", &good]);
    assert_eq!(o.status.code(), Some(2));
    let o = duplex(&["plugin", "verify", f, "--sha256", "xyz"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a sha256 digest"));
}
