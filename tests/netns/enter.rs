//! Entering a namespace from a thread.

use super::*;

/// Moves the calling thread into network namespace `ns` (setns is per thread;
/// sockets made afterwards belong to `ns` for good). Only ever call this on a
/// helper thread of one's own, never on a test thread.
pub fn enter_netns(ns: &str) -> Result<(), String> {
    let path = format!("/run/netns/{ns}");
    let f = fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
    // SAFETY: setns on a valid, open namespace fd; it only changes this
    // thread's network namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(format!(
            "setns({path}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Runs `f` on a new thread inside namespace `ns` and returns its result.
pub fn run_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let ns2 = ns.to_string();
    std::thread::Builder::new()
        .name(format!("in-{ns}"))
        .spawn(move || {
            enter_netns(&ns2)?;
            Ok(f())
        })
        .map_err(|e| format!("spawn: {e}"))?
        .join()
        .map_err(|_| "thread panicked".to_string())?
}
