//! An agent at rest holds as little memory as it can: between sessions it
//! may sleep for weeks on a production host.
//!
//! A session leaves two kinds of resident memory behind: free heap the
//! allocator keeps (given back with `malloc_trim`), and the pages of the
//! binary it ran (wasmtime, and cranelift when it compiled plugins), which
//! stay mapped and count in the process's RSS although idle code never
//! touches them again. `MADV_PAGEOUT` asks the kernel to reclaim the
//! latter; unlike `MADV_DONTNEED` it keeps every page's content (a page
//! written since it was mapped, such as relocated data, is kept or swapped,
//! never reverted to the file's bytes), so it is safe on every mapping of
//! the binary. The next session faults back in what it needs.

use std::os::unix::fs::MetadataExt;

/// Give back the memory the last session used and the idle agent does not.
pub fn give_back_memory() {
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    page_out_own_binary();
}

/// Ask the kernel to reclaim the pages of every mapping of this process's
/// own executable. Best effort: nothing here can fail the agent.
fn page_out_own_binary() {
    // By inode, not by path: the binary may have been replaced on disk
    // (its maps then say "(deleted)").
    let Ok(exe) = std::fs::metadata("/proc/self/exe") else {
        return;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for (start, end) in executable_mappings(&maps, exe.ino()) {
        // SAFETY: the range is a mapping of this process (from its own
        // maps), and MADV_PAGEOUT preserves the contents of every page.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_PAGEOUT);
        }
    }
}

/// The address ranges in `/proc/self/maps` text that map the file with
/// inode `ino`.
fn executable_mappings(maps: &str, ino: u64) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            // address perms offset dev inode [path]
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let inode: u64 = fields.nth(3)?.parse().ok()?;
            if inode != ino {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_mapping_of_the_binary_by_inode() {
        let maps = "\
55d0a0000000-55d0a0400000 r--p 00000000 fd:01 1234 /usr/bin/duplex (deleted)
55d0a0400000-55d0a1400000 r-xp 00400000 fd:01 1234 /usr/bin/duplex (deleted)
55d0a2000000-55d0a2021000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000020000 r-xp 00000000 fd:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
";
        assert_eq!(
            executable_mappings(maps, 1234),
            vec![
                (0x55d0a0000000, 0x55d0a0400000),
                (0x55d0a0400000, 0x55d0a1400000)
            ]
        );
        assert!(executable_mappings(maps, 7).is_empty());
    }

    /// Pointers in the binary's data are relocated at start-up: pages
    /// that differ from the file. Reverting them (what `MADV_DONTNEED`
    /// would do) would crash here; paging out must keep them.
    static RELOCATED: [&str; 2] = ["approve", "abort"];

    #[test]
    fn paging_out_the_running_binary_keeps_its_code_and_relocated_data() {
        give_back_memory();
        let names = std::hint::black_box(&RELOCATED);
        assert_eq!(names.join(","), "approve,abort");
    }
}
