//! `duplex`: runs the read-only views of the state dir itself and hands
//! every other command to `duplex-full`, installed beside it
//! (`cli/front.rs` says why, and why std's runtime start-up is skipped).

#![no_main]

/// The C entry point; std's `env::args` still works (on glibc it is filled
/// from `.init_array`, not by the runtime start-up this skips).
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    duplex_cli::front()
}
