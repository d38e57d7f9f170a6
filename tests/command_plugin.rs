//! The `exec` capability and the `command` plugin, through the `duplex`
//! binary with real policy files and real scripts written to a temporary
//! directory: gates and hardware operations as commands, the environment
//! they get, and what the host refuses or kills.

mod support;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::*;

/// A site whose policy uses the `command` plugin.
struct Rig {
    site: Site,
}

impl Rig {
    fn new() -> Rig {
        Rig { site: Site::new() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.site.dir.path().join(name)
    }

    /// An executable `#!/bin/sh` script.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// A policy: `target` is the target block's `plugin` and `with`,
    /// `grants` the command plugin's `capabilities` (YAML flow), `spec` more
    /// of `spec:`.
    fn policy(&self, target_plugin: &str, target_with: &str, grants: &str, spec: &str) -> PathBuf {
        let root = repo_root();
        let dist = root.join("plugins/dist");
        let text = format!(
            "apiVersion: duplex.dev/v1alpha1
kind: UpgradePolicy
metadata:
  name: command-test
spec:
  target:
    name: sim-test
    plugin: {target_plugin}
    with: {target_with}
  software:
    - name: acme-app
      version: \"2.4.1\"
      source: {app}
      sha256: 5df80e6b86efa50d1aaf17c7d4aa5ead9cc6eafc4e09a13563af898770475fb5
  plugins:
    - name: sim-duplex
      source: {dist}/sim-duplex.wasm
      sha256: {d}
      capabilities: {{storage: true, storageNamespace: sim}}
    - name: command
      source: {dist}/command.wasm
      sha256: {c}
      capabilities: {grants}
  retries: {{default: {{limit: 0}}}}
{spec}",
            app = root.join("policies/artifacts/acme-app-2.4.1.pkg").display(),
            dist = dist.display(),
            d = plugin_digest("sim-duplex"),
            c = plugin_digest("command"),
        );
        std::fs::write(self.site.policy_path(), text).unwrap();
        self.site.policy_path()
    }

    fn log(&self) -> String {
        self.site.log_text()
    }
}

fn grant(programs: &[&Path]) -> String {
    let list: Vec<String> = programs
        .iter()
        .map(|p| format!("{{program: {}}}", p.display()))
        .collect();
    format!("{{exec: [{}]}}", list.join(", "))
}

/// Whether a process runs (a zombie waiting for its reaper does not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat.rsplit_once(") ").map(|(_, r)| r.chars().next());
            state != Some(Some('Z'))
        }
    }
}

/// Waits (bounded) for `pid` to be gone; whether it is.
fn gone(pid: u32) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn read_pid(path: &Path) -> u32 {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(Instant::now() < until, "{} never written", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A command that forks a grandchild that never exits, then never exits
/// itself; both write their pid.
fn forker(rig: &Rig) -> (PathBuf, PathBuf, PathBuf) {
    let script = rig.script(
        "forker.sh",
        "sleep 1000 &\necho $! > \"$1\"\necho $$ > \"$2\"\nwait",
    );
    (script, rig.path("grandchild.pid"), rig.path("child.pid"))
}

#[test]
fn command_gates_pass_retry_later_and_fail_with_the_scripts_words() {
    let rig = Rig::new();
    let ok = rig.script("ok.sh", "echo all good");
    let counter = rig.path("counter");
    let later = rig.script(
        "later.sh",
        "n=$(cat \"$1\" 2>/dev/null || echo 0)\nn=$((n + 1))\necho $n > \"$1\"\nif [ $n -lt 3 ]; then echo \"warming up ($n)\"; exit 21; fi\necho ready",
    );
    rig.policy(
        "sim-duplex",
        "{time-scale: 0}",
        &grant(&[&ok, &later]),
        &format!(
            "  gates:
    prepareSplit:
      - {{name: ok, plugin: command, check: run, with: {{run: [{ok}]}}, interval: 10ms}}
      - {{name: later, plugin: command, check: run, with: {{run: [{later}, {counter}], retryLaterExit: 21}}, interval: 10ms, failureLimit: 5}}
",
            ok = ok.display(),
            later = later.display(),
            counter = counter.display()
        ),
    );
    let out = rig.site.apply(&[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(rig.site.states(), FORWARD);
    let log = rig.log();
    for needle in [
        "check `ok`: pass",
        "all good",
        "says retry later (exit code 21): not ready yet: warming up (1)",
        "check `later`: fail (2 in a row)",
        "check `later`: pass",
        "plugin log: info exec `",
    ] {
        assert!(log.contains(needle), "log lacks `{needle}`:\n{log}");
    }
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "3");

    // A failing script: its exit code and its own words are the reason.
    let bad = rig.script(
        "bad.sh",
        "echo checking >&1\necho 'disk /var is 97% full' >&2\nexit 3",
    );
    rig.policy(
        "sim-duplex",
        "{time-scale: 0}",
        &grant(&[&bad]),
        &format!(
            "  gates:\n    prepareSplit:\n      - {{name: space, plugin: command, check: run, with: {{run: [{}]}}, failureLimit: 1}}\n",
            bad.display()
        ),
    );
    let out = rig.site.apply(&[]);
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let log = rig.log();
    assert!(
        log.contains("check `space`: fail (1 in a row): `")
            && log.contains("exit code 3: disk /var is 97% full"),
        "{log}"
    );
    assert!(log.contains("stderr: disk /var is 97% full"), "{log}");
}

#[test]
fn operations_and_installs_are_commands_that_see_the_active_upgrade_environment() {
    let rig = Rig::new();
    let rec = rig.path("record");
    // `$3`: seconds to take (a long command, polled across calls).
    let op = rig.script(
        "op.sh",
        "[ -n \"$3\" ] && sleep \"$3\"\necho \"$1 side=$ACTIVE_UPGRADE_SIDE state=$ACTIVE_UPGRADE_STATE request=$ACTIVE_UPGRADE_REQUEST attempt=$ACTIVE_UPGRADE_ATTEMPT session=${ACTIVE_UPGRADE_SESSION:+set} site=$SITE operator=${DUPLEX_OPERATOR:-unset} home=${HOME:-unset}\" >> \"$2\"",
    );
    let partner = rig.script("partner.sh", "echo up");
    let r = rec.display();
    let o = op.display();
    rig.policy(
        "command",
        &format!(
            "{{split: {{run: [{o}, split, {r}]}}, merge: {{run: [{o}, merge, {r}, '1'], waitMs: 100}}, commit: {{run: [{o}, commit, {r}]}}, abort: {{run: [{o}, abort, {r}]}}, finish: {{run: [{o}, finish, {r}]}}, install: {{run: [{o}, 'install-{{name}}-{{version}}', {r}]}}, partner: {{run: [{p}]}}}}",
            p = partner.display()
        ),
        &format!(
            "{{exec: [{{program: {o}, env: {{SITE: lab-1, PATH: /usr/bin:/bin}}}}, {{program: {p}}}]}}",
            p = partner.display()
        ),
        "",
    );
    let out = rig.site.apply(&[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(rig.site.states(), FORWARD);
    let lines: Vec<String> = std::fs::read_to_string(&rec)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let tail = "attempt=1 session=set site=lab-1 operator=unset home=unset";
    assert_eq!(
        lines,
        [
            format!("split side=upgrade state=Split request=op/split {tail}"),
            format!(
                "install-acme-app-2.4.1 side=upgrade state=Split request=install/acme-app {tail}"
            ),
            format!("merge side=upgrade state=Merge request=op/merge {tail}"),
            format!("commit side=upgrade state=Commit request=op/commit {tail}"),
            format!("finish side=upgrade state=Finish request=op/finish {tail}"),
        ]
    );
    let log = rig.log();
    // The merge took a second: started by one call, polled by the next.
    assert!(
        log.contains("operate merge [op/merge]: pending 0%: `"),
        "{log}"
    );
    assert!(log.contains("operate merge [op/merge]: done: `"), "{log}");
    assert!(log.contains("partner side is Up"), "{log}");
}

#[test]
fn an_ungranted_program_is_refused_naming_it_and_the_plugin_and_nothing_runs() {
    let rig = Rig::new();
    let op = rig.script("op.sh", "exit 0");
    let marker = rig.path("touched");
    rig.policy(
        "command",
        &format!("{{split: {{run: [/usr/bin/touch, {}]}}}}", marker.display()),
        &grant(&[&op]),
        "",
    );
    let out = rig.site.apply(&[]);
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let log = rig.log();
    assert!(
        log.contains(&format!(
            "exec of `/usr/bin/touch` refused for plugin `command`: not a granted program; the policy grants it: {}",
            op.display()
        )),
        "{log}"
    );
    assert!(!marker.exists());
}

#[test]
fn arguments_are_never_a_shell_and_dot_dot_paths_are_refused() {
    let rig = Rig::new();
    let args = rig.script("args.sh", "out=$1\nshift\nprintf '%s\\n' \"$@\" > \"$out\"");
    let out_file = rig.path("args.out");
    let pwned = rig.path("pwned");
    let hostile = [
        format!("; touch {}", pwned.display()),
        format!("$(touch {})", pwned.display()),
        format!("`touch {}`", pwned.display()),
        format!("&& touch {} #", pwned.display()),
    ];
    let quoted: Vec<String> = hostile
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "''")))
        .collect();
    rig.policy(
        "sim-duplex",
        "{time-scale: 0}",
        &format!("{{exec: [{{program: {}}}, {{program: /bin/sh}}]}}", args.display()),
        &format!(
            "  gates:\n    prepareSplit:\n      - {{name: args, plugin: command, check: run, with: {{run: [{}, {}, {}]}}}}\n      - {{name: dotdot, plugin: command, check: run, with: {{run: [/usr/bin/../bin/sh, -c, 'touch {}']}}, failureLimit: 1}}\n",
            args.display(),
            out_file.display(),
            quoted.join(", "),
            pwned.display()
        ),
    );
    let out = rig.site.apply(&[]);
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let got: Vec<String> = std::fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        got, hostile,
        "each hostile argument arrives as one plain argument"
    );
    assert!(!pwned.exists(), "nothing was run through a shell");
    let log = rig.log();
    assert!(
        log.contains("exec of `/usr/bin/../bin/sh` refused for plugin `command`: the path contains `.` or `..`"),
        "{log}"
    );
}

#[test]
fn a_command_and_its_grandchild_are_killed_when_the_request_ends() {
    let rig = Rig::new();
    let (script, grandchild, child) = forker(&rig);
    rig.policy(
        "sim-duplex",
        "{time-scale: 0}",
        &grant(&[&script]),
        &format!(
            "  gates:\n    prepareSplit:\n      - {{name: stuck, plugin: command, check: run, with: {{run: [{}, {}, {}], waitMs: 50}}, interval: 100ms, timeout: 1s, failureLimit: 1000}}\n",
            script.display(),
            grandchild.display(),
            child.display()
        ),
    );
    let out = rig.site.apply(&[]);
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let (g, c) = (read_pid(&grandchild), read_pid(&child));
    assert!(gone(c), "the command {c} still runs");
    assert!(gone(g), "the grandchild {g} still runs");
    let log = rig.log();
    assert!(
        log.contains("is still running (kept: the next round finds it again)"),
        "{log}"
    );
    assert!(
        log.contains("killed command `")
            && log
                .contains("(check/stuck, key `check`) with its process group: the request failed"),
        "{log}"
    );
    // One command all along: started once, found again by every round.
    assert_eq!(std::fs::read_to_string(&child).unwrap().lines().count(), 1);
}

#[test]
fn a_command_past_its_timeout_is_killed_with_its_group() {
    let rig = Rig::new();
    let (script, grandchild, child) = forker(&rig);
    rig.policy(
        "command",
        &format!(
            "{{split: {{run: [{}, {}, {}], timeoutMs: 300, waitMs: 100}}}}",
            script.display(),
            grandchild.display(),
            child.display()
        ),
        &grant(&[&script]),
        "",
    );
    let out = rig.site.apply(&[]);
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let (g, c) = (read_pid(&grandchild), read_pid(&child));
    assert!(
        gone(c) && gone(g),
        "the command or its grandchild still runs"
    );
    let log = rig.log();
    assert!(log.contains("killed by signal 9 (timed out)"), "{log}");
    assert!(
        log.contains("(killed by the runner: its timeout of 300 ms passed)"),
        "{log}"
    );
}

#[test]
fn stopping_the_runner_kills_the_commands_it_started() {
    let rig = Rig::new();
    let (script, grandchild, child) = forker(&rig);
    let policy = rig.policy(
        "sim-duplex",
        "{time-scale: 0}",
        &grant(&[&script]),
        &format!(
            "  gates:\n    prepareSplit:\n      - {{name: stuck, plugin: command, check: run, with: {{run: [{}, {}, {}], waitMs: 50}}, interval: 100ms, timeout: 10m, failureLimit: 100000}}\n",
            script.display(),
            grandchild.display(),
            child.display()
        ),
    );
    let mut runner = duplex()
        .arg("--state-dir")
        .arg(rig.site.state_dir())
        .args(["apply", policy.to_str().unwrap()])
        .env("DUPLEX_OPERATOR", "tester")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (g, c) = (read_pid(&grandchild), read_pid(&child));
    assert!(alive(g) && alive(c));
    // SAFETY: signalling the runner this test started.
    unsafe {
        libc::kill(runner.id() as i32, libc::SIGTERM);
    }
    runner.wait().unwrap();
    assert!(gone(c), "the command {c} outlived the runner's stop");
    assert!(gone(g), "the grandchild {g} outlived the runner's stop");
    let log = rig.log();
    assert!(
        log.contains("with its process group: the run stopped"),
        "{log}"
    );
}

#[test]
fn gigabytes_of_output_are_read_capped_and_counted() {
    let rig = Rig::new();
    let flood = rig.script(
        "flood.sh",
        "PATH=/usr/bin:/bin\nyes | head -c 1073741824\necho finished >&2",
    );
    rig.policy(
        "sim-duplex",
        "{time-scale: 0}",
        &grant(&[&flood]),
        &format!(
            "  gates:\n    prepareSplit:\n      - {{name: flood, plugin: command, check: run, with: {{run: [{}]}}, interval: 10ms, failureLimit: 100}}\n",
            flood.display()
        ),
    );
    let out = rig.site.apply(&["--until", "PrepareSplit"]);
    assert_eq!(out.code, 6, "{}{}", out.stdout, out.stderr);
    let log = rig.log();
    assert!(log.contains("check `flood`: pass"), "{log}");
    let dropped = (1u64 << 30) - (64 << 10);
    assert!(
        log.contains(&format!(
            "{dropped} bytes of output beyond the first 64 KiB of each stream dropped"
        )),
        "{log}"
    );
    assert!(log.contains("stderr: finished"), "{log}");
}

#[test]
fn validate_refuses_exec_without_a_grant_or_with_a_bad_program_where_it_is_written() {
    let rig = Rig::new();
    let policy = rig.policy("sim-duplex", "{time-scale: 0}", "{}", "");
    let text = std::fs::read_to_string(&policy).unwrap();
    let entry = text
        .lines()
        .position(|l| l.trim() == "- name: command")
        .unwrap()
        + 1;
    let out = rig.site.duplex(&["validate", policy.to_str().unwrap()]);
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains(&format!("policy.yaml:{entry}:"))
            && all.contains("plugin `command` imports duplex:plugin/exec (it runs programs) but the policy grants it none"),
        "{all}"
    );

    let policy = rig.policy(
        "sim-duplex",
        "{time-scale: 0}",
        "\n        exec:\n          - program: /usr/bin/../bin/sh\n          - program: /no/such/program\n          - program: relative/tool",
        "",
    );
    let text = std::fs::read_to_string(&policy).unwrap();
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let out = rig.site.duplex(&["validate", policy.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    let all = format!("{}{}", out.stdout, out.stderr);
    for (needle, message) in [
        ("/usr/bin/../bin/sh", "contains `.` or `..`"),
        (
            "/no/such/program",
            "/no/such/program`: No such file or directory",
        ),
        ("relative/tool", "is not an absolute path"),
    ] {
        assert!(
            all.contains(&format!("policy.yaml:{}:", line_of(needle))) && all.contains(message),
            "{needle}: {all}"
        );
    }
}
