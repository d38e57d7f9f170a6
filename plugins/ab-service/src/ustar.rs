//! A reader of (POSIX ustar / GNU) tar archives, as much as a release needs:
//! regular files, directories and symbolic links, names with the ustar
//! prefix or a GNU long name. Written here rather than taken from the `tar`
//! crate because that crate's file-system side does not build for
//! `wasm32-unknown-unknown`; this one only parses, and every path it yields
//! is checked to stay inside the release.

use std::io::{self, Read};

/// One member of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Dir {
        path: String,
    },
    Symlink {
        path: String,
        target: String,
    },
}

/// Bytes a release file may have (the whole member is held in memory, and a
/// plugin's memory is limited).
pub const MAX_MEMBER_BYTES: u64 = 32 << 20;

/// Reads the next member; `None` at the end of the archive.
pub fn next_member(r: &mut impl Read) -> io::Result<Option<Member>> {
    let mut long_name: Option<String> = None;
    loop {
        let mut header = [0u8; 512];
        if !read_block(r, &mut header)? || header.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let size = octal(&header[124..136])?;
        let kind = header[156];
        if kind == b'L' {
            // GNU long name: the next member's name is this member's data.
            let data = read_data(r, size)?;
            let name = String::from_utf8_lossy(&data);
            long_name = Some(name.trim_end_matches('\0').to_string());
            continue;
        }
        let name = match long_name.take() {
            Some(n) => n,
            None => {
                let name = cstr(&header[0..100]);
                let prefix = cstr(&header[345..500]);
                if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                }
            }
        };
        let path = clean(&name)?;
        let mode = octal(&header[100..108]).unwrap_or(0o644) as u32 & 0o7777;
        match kind {
            b'0' | 0 | b'7' => {
                let data = read_data(r, size)?;
                return Ok(Some(Member::File { path, mode, data }));
            }
            b'5' => {
                skip_data(r, size)?;
                if path.is_empty() {
                    continue;
                }
                return Ok(Some(Member::Dir { path }));
            }
            b'2' => {
                skip_data(r, size)?;
                let target = cstr(&header[157..257]);
                return Ok(Some(Member::Symlink { path, target }));
            }
            // PAX headers, hard links, devices, FIFOs: not part of a release.
            b'x' | b'g' => {
                skip_data(r, size)?;
                continue;
            }
            other => {
                return Err(invalid(format!(
                    "`{name}`: unsupported member type `{}`",
                    other as char
                )));
            }
        }
    }
}

/// The member's path, relative and without `.`/`..`; an absolute path or one
/// climbing out of the release is refused.
fn clean(name: &str) -> io::Result<String> {
    if name.starts_with('/') {
        return Err(invalid(format!("`{name}`: absolute path in the archive")));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(invalid(format!("`{name}`: `..` in the archive"))),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn octal(field: &[u8]) -> io::Result<u64> {
    let text = cstr(field);
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| invalid(format!("bad number `{text}` in a header")))
}

fn read_block(r: &mut impl Read, buf: &mut [u8; 512]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 if filled == 0 => return Ok(false),
            0 => return Err(invalid("archive ends inside a header".into())),
            n => filled += n,
        }
    }
    Ok(true)
}

fn read_data(r: &mut impl Read, size: u64) -> io::Result<Vec<u8>> {
    if size > MAX_MEMBER_BYTES {
        return Err(invalid(format!(
            "a member of {size} bytes (at most {MAX_MEMBER_BYTES})"
        )));
    }
    let mut data = vec![0u8; size as usize];
    r.read_exact(&mut data)?;
    skip(r, padding(size))?;
    Ok(data)
}

fn skip_data(r: &mut impl Read, size: u64) -> io::Result<()> {
    skip(r, size + padding(size))
}

fn padding(size: u64) -> u64 {
    (512 - size % 512) % 512
}

fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied < n {
        return Err(invalid("archive ends inside a member".into()));
    }
    Ok(())
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, kind: u8, size: usize, link: &str) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000755");
        let s = format!("{size:011o}");
        h[124..135].copy_from_slice(s.as_bytes());
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h
    }

    fn member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut v = header(name, b'0', data.len(), "");
        v.extend_from_slice(data);
        v.resize(v.len() + padding(data.len() as u64) as usize, 0);
        v
    }

    #[test]
    fn reads_files_dirs_and_links_then_ends() {
        let mut tar = header("./", b'5', 0, "");
        tar.extend(member("./VERSION", b"2.0.0\n"));
        tar.extend(header("./bin/run", b'2', 0, "../server.py"));
        tar.extend(vec![0u8; 1024]);
        let mut r = &tar[..];
        assert_eq!(
            next_member(&mut r).unwrap(),
            Some(Member::File {
                path: "VERSION".into(),
                mode: 0o755,
                data: b"2.0.0\n".to_vec()
            })
        );
        assert_eq!(
            next_member(&mut r).unwrap(),
            Some(Member::Symlink {
                path: "bin/run".into(),
                target: "../server.py".into()
            })
        );
        assert_eq!(next_member(&mut r).unwrap(), None);
    }

    #[test]
    fn refuses_paths_that_leave_the_release() {
        for name in ["../etc/passwd", "/etc/passwd", "a/../../b"] {
            let tar = member(name, b"x");
            let err = next_member(&mut &tar[..]).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn a_truncated_archive_is_an_error_not_an_end() {
        let tar = member("VERSION", b"2.0.0\n");
        // Inside the data, inside the padding, inside the header.
        let err = next_member(&mut &tar[..515]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        let err = next_member(&mut &tar[..600]).unwrap_err();
        assert!(err.to_string().contains("ends inside a member"), "{err}");
        let err = next_member(&mut &tar[..100]).unwrap_err();
        assert!(err.to_string().contains("ends inside a header"), "{err}");
    }
}
