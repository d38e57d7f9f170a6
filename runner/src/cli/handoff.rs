//! Handing a command from `duplex` to `duplex-full`: the same arguments in
//! the same process (`exec`), so its pid, signals, exit code, terminal and
//! file descriptors are those of the command the user ran.

use super::{Output, errors, exit};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// The file name of the whole command line, installed beside `duplex`.
pub const FULL: &str = "duplex-full";

/// Where `duplex-full` is: beside this executable, symlinks resolved
/// (`/usr/local/bin/duplex -> /opt/duplex/bin/duplex` finds
/// `/opt/duplex/bin/duplex-full`).
fn full_path() -> std::io::Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name(FULL))
}

/// Replace this process with `duplex-full` and the same arguments. Returns
/// only when that cannot be done, with the exit code of the error it
/// reported.
pub fn exec_full(args: &[std::ffi::OsString]) -> u8 {
    // The arguments are not parsed here; an error is reported as JSON when
    // they ask for it.
    let output = if json_output(args) {
        Output::Json
    } else {
        Output::Human
    };
    let (argv0, rest) = args
        .split_first()
        .map_or(("duplex".into(), &[][..]), |(a, r)| (a.clone(), r));
    let path = match full_path() {
        Ok(path) => path,
        Err(e) => {
            errors::fail(
                output,
                &format!("cannot find {FULL}: this executable's own path is unknown ({e})"),
            );
            return exit::USAGE;
        }
    };
    // `ps` keeps showing what the user typed.
    let err = std::process::Command::new(&path)
        .arg0(argv0)
        .args(rest)
        .exec();
    errors::fail(
        output,
        &format!(
            "cannot run {}: {err}\n{FULL} runs every command but status, log and history, and is installed beside duplex",
            path.display()
        ),
    );
    exit::USAGE
}

/// Whether the arguments ask for `--output json` (as a global option may,
/// anywhere among them).
fn json_output(args: &[std::ffi::OsString]) -> bool {
    let mut args = args.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--output=json" || (arg == "--output" && args.next().is_some_and(|v| v == "json"))
        {
            return true;
        }
    }
    false
}
