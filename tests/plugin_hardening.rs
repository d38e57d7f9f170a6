//! The plugin host's hardening, end to end: hostile plugins (hand-written
//! WAT, tests/data/plugins) and hostile files driven through the `duplex`
//! binary the way an operator would meet them.

mod support;
use support::*;

#[path = "support/wat.rs"]
mod wat;

use std::path::PathBuf;

/// A policy on the simulated system with one more plugin, `hostile` (the
/// skeleton with `snippet` put in), and `spec` appended; returns the
/// plugin's file.
fn hostile_policy(site: &Site, snippet: &str, plugin_extra: &str, spec: &str) -> PathBuf {
    let (path, digest) = wat::write(Some(snippet), site.dir.path());
    // The shared policy ends with its `plugins:` list: this entry extends it.
    let entry = format!(
        "    - name: hostile
      source: {}
      sha256: {digest}
{plugin_extra}",
        path.display()
    );
    site.policy("", &format!("{entry}{spec}"));
    path
}

#[test]
fn a_gate_waiting_in_wasi_past_its_deadline_fails_instead_of_passing() {
    // The plugin has no grant and waits 8 s on a WASI clock; its timeout is
    // 2 s: the gate must fail (and the session hold), not pass late.
    let site = Site::new();
    hostile_policy(
        &site,
        "wasi-sleep",
        "      limits: {timeout: 2s}\n",
        "  retries: {default: {limit: 0}}
  gates:
    prepareSplit:
      - {name: slow, plugin: hostile, check: gate, failureLimit: 1, interval: 10ms}
",
    );
    let out = site.apply(&[]);
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    let log = site.log_text();
    assert!(
        log.contains("plugin `hostile`: check `gate` exceeded its deadline of 2s"),
        "{log}"
    );
    assert!(!log.contains("check `slow`: pass"), "{log}");
}

#[test]
fn a_describe_that_waits_fails_validate_and_inspect_at_the_deadline() {
    let site = Site::new();
    let plugin = hostile_policy(
        &site,
        "wasi-sleep-describe",
        "      limits: {timeout: 2s}\n",
        "",
    );
    let out = site.duplex(&["validate", site.policy_path().to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("plugin `hostile`: describe exceeded its deadline of 2s"),
        "{}",
        out.stderr
    );
    // `plugin inspect` runs describe under the default limits (10 s, as a
    // policy's; the plugin waits 30 s).
    let out = duplex_run(&["plugin", "inspect", plugin.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("describe exceeded its deadline of 10s"),
        "{}",
        out.stderr
    );
}

#[test]
fn validate_refuses_a_parameter_schema_that_explodes_instead_of_hanging() {
    let site = Site::new();
    hostile_policy(
        &site,
        "schema-bomb",
        "",
        "  gates:
    prepareSplit:
      - {name: bomb, plugin: hostile, check: gate, with: {a: 1}}
",
    );
    let out = site.duplex(&["validate", site.policy_path().to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "spec.plugins[2].name: plugin `hostile`: describe returned invalid data: check `gate`: params-schema expands to 26388279066367 nodes with its `$ref`s followed, more than the limit of 10000"
        ),

        "{}",
        out.stderr
    );
}

#[test]
fn a_fifo_or_a_device_as_plugin_is_refused_at_once() {
    let site = Site::new();
    let fifo = site.dir.path().join("plugin.wasm");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo has no other precondition.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // Were the runner to open it blocking, this writer would let it go on
    // (and read nothing); refused without a read, the writer is never met.
    let writer = fifo.clone();
    std::thread::spawn(move || drop(std::fs::OpenOptions::new().write(true).open(writer)));
    site.policy(
        "",
        &format!(
            "    - name: hostile\n      source: {}\n      sha256: {}\n",
            fifo.display(),
            "0".repeat(64)
        ),
    );
    let out = site.duplex(&["validate", site.policy_path().to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "spec.plugins[2].source: cannot read plugin `hostile` from {}: it is a FIFO, not a regular file",
            fifo.display()
        )),
        "{}",
        out.stderr
    );

    // `plugin inspect` and `plugin verify` read the same way: /dev/zero is
    // refused, not read until memory runs out.
    let out = duplex_run(&["plugin", "inspect", "/dev/zero"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("it is a character device"),
        "{}",
        out.stderr
    );
    let zeros = "0".repeat(64);
    let out = duplex_run(&["plugin", "verify", "/dev/zero", "--sha256", &zeros]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("it is a character device"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_plugin_cache_every_user_can_write_is_refused_with_what_to_do() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new();
    site.policy("", "");
    let cache = site.dir.path().join("open-cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run(duplex()
        .env("DUPLEX_CACHE_DIR", &cache)
        .args(["validate", site.policy_path().to_str().unwrap()]));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "cannot use {} as the plugin cache: it is writable by every user (mode 0777): whoever can write it can run code as this runner",
            cache.display()
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn a_writable_grant_over_the_state_dir_is_refused_before_the_session_starts() {
    let site = Site::new();
    std::fs::create_dir_all(site.state_dir()).unwrap();
    hostile_policy(
        &site,
        "wasi-preopens",
        &format!(
            "      capabilities:\n        dirs:\n          - {{host: {}, guest: /state, readOnly: false}}\n",
            site.state_dir().display()
        ),
        "  gates:
    prepareSplit:
      - {name: look, plugin: hostile, check: gate}
",
    );
    let out = site.apply(&[]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "spec.plugins[2].capabilities.dirs[0].host: grants read-write access to {0}, which is the state dir ({0}): a plugin must not reach the runner's journal",
            site.state_dir().display()
        )),
        "{}",
        out.stderr
    );
    let sessions = std::fs::read_dir(site.state_dir().join("sessions"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(sessions, 0, "a session was started");
}

/// `duplex ARGS` with the address space limited to `kib` KiB (`ulimit -v`).
fn duplex_under_ulimit(kib: u64, site: &Site, args: &str) -> Run {
    let cmd = duplex();
    let mut sh = std::process::Command::new("sh");
    sh.current_dir(repo_root())
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .env("DUPLEX_STATE_DIR", site.state_dir())
        .arg("-c")
        .arg(format!("ulimit -v {kib} && exec \"$0\" {args}"))
        .arg(cmd.get_program());
    run(&mut sh)
}

#[test]
fn plugins_run_under_a_4_gib_address_space_limit() {
    // Each memory used to reserve 4 GiB + guards: not one instance fitted.
    let site = Site::new();
    site.policy("", GATES);
    let policy = site.policy_path();
    let out = duplex_under_ulimit(4 << 20, &site, &format!("validate {}", policy.display()));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = duplex_under_ulimit(4 << 20, &site, &format!("apply {}", policy.display()));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    // A limit the address space cannot give: the message says what to change.
    let site = Site::new();
    let (path, digest) = wat::write(None, site.dir.path());
    site.policy(
        "",
        &format!(
            "    - name: big\n      source: {}\n      sha256: {digest}\n      limits: {{memory: 3GiB}}\n",
            path.display()
        ),
    );
    let out = duplex_under_ulimit(
        4 << 20,
        &site,
        &format!("validate {}", site.policy_path().display()),
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "plugin `big`: describe: host error: cannot reserve address space for the plugin's memory"
        ) && out.stderr.contains(
            "the largest `limits.memory` of the plugins loaded together (3072 MiB) rounded up to a power of two, plus guard pages; raise the runner's address-space limit (`ulimit -v`) or lower that `limits.memory`"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn a_full_disk_under_the_plugin_store_is_the_hosts_fault_not_the_plugins() {
    // In a user and mount namespace of its own (no privilege needed), the
    // runner sees sim's store on a full 4 KiB tmpfs: sim-duplex's storage
    // writes fail with ENOSPC, which sim-duplex reports as a retryable
    // failure of its own. The call's outcome must be the host's fault.
    let site = Site::new();
    site.policy("", "  retries: {default: {limit: 0}}\n");
    let store = site.state_dir().join("storage/sim");
    std::fs::create_dir_all(&store).unwrap();
    let cmd = duplex();
    let script = format!(
        "mount -t tmpfs -o size=4k tmpfs {store} && dd if=/dev/zero of={store}/.fill bs=4k count=1 2>/dev/null; exec \"$0\" --state-dir {state} apply {policy}",
        store = store.display(),
        state = site.state_dir().display(),
        policy = site.policy_path().display(),
    );
    let out = run(std::process::Command::new("unshare")
        .current_dir(repo_root())
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .arg(cmd.get_program()));
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // The journal is on the real disk: the log is there after the run.
    let log = site.log_text();
    assert!(
        log.contains("plugin `sim-duplex`: ")
            && log.contains(
                "the runner's `storage` capability failed on the host: storage: cannot write key"
            )
            && log.contains("No space left on device"),
        "{log}"
    );
}
