//! Test directories.

use std::path::{Path, PathBuf};

use crate::kill_processes_mentioning;

/// A temporary directory for one test, named after the test
/// (`$TMPDIR/autossh-<test name>-XXXXXX`). Its path doubles as the test's
/// marker: it appears in the command line of everything the test starts
/// (fake ssh path, sshd config path, ssh `-i` key path).
///
/// On drop, any process whose command line still mentions the directory is
/// killed (SIGCONT + SIGKILL), then the directory is removed, unless
/// `AUTOSSH_TEST_KEEP` is set in the environment (then it is kept and its path
/// printed).
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    name: String,
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDir {
    /// A directory named after the current test (the test thread's name).
    pub fn new() -> TestDir {
        let name = std::thread::current().name().unwrap_or("test").to_string();
        TestDir::named(&name)
    }

    /// A directory named after `name`.
    pub fn named(name: &str) -> TestDir {
        let mut clean: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        clean.truncate(40);
        let dir = tempfile::Builder::new()
            .prefix(&format!("autossh-{clean}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create the test dir for {name}: {e}"));
        let path = dir.path().to_path_buf();
        TestDir {
            dir: Some(dir),
            path,
            name: name.to_string(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// The directory path as a string: the marker for [`no_process_left`].
    pub fn marker(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// A fresh name `<stem>`, `<stem>-2`, ... that does not exist yet in the
    /// directory.
    pub(crate) fn unique(&self, stem: &str) -> PathBuf {
        let first = self.join(stem);
        if !first.exists() {
            return first;
        }
        for i in 2..10_000 {
            let p = self.join(format!("{stem}-{i}"));
            if !p.exists() {
                return p;
            }
        }
        panic!("no free name for {stem} in {}", self.path.display());
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        kill_processes_mentioning(&self.path);
        if std::env::var_os("AUTOSSH_TEST_KEEP").is_some() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("test dir kept: {}", kept.display());
            }
        } else if std::thread::panicking() {
            eprintln!(
                "test {} failed; its dir {} is removed (set AUTOSSH_TEST_KEEP=1 to keep it)",
                self.name,
                self.path.display()
            );
        }
    }
}
