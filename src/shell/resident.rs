//! Letting go of what only the start needed, once every tunnel is up: free heap memory goes
//! back to the kernel (`malloc_trim`), and the pages of code and read-only data that the
//! start faulted in (argument parsing, setup, `ssh -G`'s answers...) leave autossh's page
//! tables (`MADV_DONTNEED` on file mappings that hold no page of autossh's own): the kernel
//! keeps them in its page cache, and those the loop goes on using fault back in.

/// A mapping of `/proc/self/smaps`: where it is, and whether dropping its pages loses nothing.
#[derive(Debug, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    /// Backed by a file and never writable.
    file_read_only: bool,
    /// Its `Anonymous:` figure in kB: its private pages (copied on write, e.g. relocated).
    anonymous: Option<u64>,
}

impl Mapping {
    /// Every page can be read back from the file as it was: a file's, never writable, and
    /// said to hold no private page.
    fn clean(&self) -> bool {
        self.file_read_only && self.anonymous == Some(0)
    }
}

/// The mappings `smaps` lists.
fn mappings(smaps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let Some(first) = f.next() else { continue };
        if first == "Anonymous:" {
            if let Some(m) = out.last_mut() {
                m.anonymous = f.next().and_then(|n| n.parse().ok());
            }
            continue;
        }
        let Some((a, b)) = first.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        else {
            continue;
        };
        let perms = f.next().unwrap_or("");
        let inode = f.nth(2).unwrap_or("0");
        let file = inode != "0" && f.next().is_some_and(|p| p.starts_with('/'));
        out.push(Mapping {
            start,
            end,
            file_read_only: file && !perms.contains('w'),
            anonymous: None,
        });
    }
    out
}

/// Gives back what the start alone used (see the module's text).
pub fn let_go() {
    let clean: Vec<Mapping> = match std::fs::read_to_string("/proc/self/smaps") {
        Ok(smaps) => mappings(&smaps)
            .into_iter()
            .filter(Mapping::clean)
            .collect(),
        Err(_) => Vec::new(),
    };
    for m in &clean {
        // SAFETY: the range is a whole mapping of a file that autossh never wrote to (no
        // anonymous page, not writable): its pages are read back from the file as they were.
        unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_DONTNEED,
            );
        }
    }
    drop(clean);
    // Last: the text of smaps read above is free heap memory too.
    // SAFETY: malloc_trim only returns free memory of glibc's heap to the kernel.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unwritten_file_mappings_without_private_pages_are_clean() {
        // The last has no Anonymous line: not known to be clean.
        let smaps = "\
55d0a0000000-55d0a0010000 r--p 00000000 08:01 1234 /usr/bin/autossh
Rss:                  64 kB
Anonymous:             0 kB
55d0a0010000-55d0a0100000 r-xp 00010000 08:01 1234 /usr/bin/autossh
Anonymous:             0 kB
55d0a0100000-55d0a0104000 r--p 00100000 08:01 1234 /usr/bin/autossh
Anonymous:            16 kB
55d0a0104000-55d0a0105000 rw-p 00104000 08:01 1234 /usr/bin/autossh
Anonymous:             4 kB
55d0a1000000-55d0a1021000 rw-p 00000000 00:00 0 [heap]
Anonymous:           132 kB
7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
7f0000000000-7f0000001000 r--p 00000000 08:01 99 /usr/lib/locale/C.utf8/LC_CTYPE
Rss:                   4 kB
";
        let clean: Vec<bool> = mappings(smaps).iter().map(Mapping::clean).collect();
        assert_eq!(clean, [true, true, false, false, false, false, false]);
        assert_eq!(mappings(smaps)[1].start, 0x55d0a0010000);
        assert_eq!(mappings(smaps)[1].end, 0x55d0a0100000);
    }

    /// Dropping the pages loses nothing: code, read-only data and relocated tables still
    /// work afterwards, here and in a child.
    #[test]
    fn the_process_goes_on_as_before() {
        let before = format!("{:?}", mappings("1-2 r--p 0 0:0 0 /x\n"));
        let_go();
        let_go();
        assert_eq!(format!("{:?}", mappings("1-2 r--p 0 0:0 0 /x\n")), before);
        let out = std::process::Command::new("true").status();
        assert!(out.is_ok_and(|s| s.success()));
    }
}
