//! Who gives an operator's command: `$DUPLEX_OPERATOR`, else the name of the
//! effective OS user (from the password database, not `$USER`, which any
//! process may set), else `uid N`.

use duplex_core::app::Operator;
use std::ffi::CStr;

pub const OPERATOR_ENV: &str = "DUPLEX_OPERATOR";

pub fn current() -> Operator {
    if let Some(name) = std::env::var(OPERATOR_ENV)
        .ok()
        .filter(|n| !n.trim().is_empty())
    {
        return Operator(name.trim().to_string());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    Operator(user_name(uid).unwrap_or_else(|| format!("uid {uid}")))
}

/// The name of user `uid` in the password database.
pub fn user_name(uid: u32) -> Option<String> {
    // SAFETY: getpwuid_r writes into the buffers we own and sizes we give;
    // the result pointer is only read when it is non-null and the call
    // succeeded.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        CStr::from_ptr(pwd.pw_name)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}
