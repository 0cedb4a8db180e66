//! The open-files limit, raised at start when autossh holds forwards: each relayed connection
//! takes two descriptors (and ssh, which inherits the limit, one), so thousands of waiting
//! and relayed connections need more than the usual 1024.

/// Root may raise the hard limit itself up to this (bounded by the kernel's `nr_open`).
const ROOT_AT_LEAST: libc::rlim_t = 65_536;

/// Soft limit up to the hard one; as root, both to at least [`ROOT_AT_LEAST`].
pub fn raise() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let mut target = hard;
    if nix::unistd::geteuid().is_root() && hard < ROOT_AT_LEAST {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(ROOT_AT_LEAST);
        target = ROOT_AT_LEAST.min(nr_open).max(hard);
    }
    if target > soft && setrlimit(Resource::RLIMIT_NOFILE, target, target.max(hard)).is_err() {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    if let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) {
        log::debug!("open files: at most {soft}");
    }
}
