//! One tunnel across the two namespaces: autossh, sshd, an echo service, the network and
//! the test's directory, ended by [`NsTunnel::finish`] with nothing left behind.

use super::*;

/// Field order is drop order: autossh first, the test dir last.
pub struct NsTunnel {
    pub autossh: Proc,
    pub sshd: NsSshd,
    pub echo: EchoService,
    pub net: TestNet,
    pub dir: TestDir,
}

impl NsTunnel {
    /// autossh's log (its stderr).
    pub fn log(&self) -> String {
        self.autossh.stderr_text()
    }

    /// autossh's command, state and log, then sshd's log: for a failed assertion.
    pub fn story(&self) -> String {
        format!(
            "{}\n--- sshd ---\n{}",
            self.autossh.describe(),
            self.sshd.log()
        )
    }

    /// `ip ARGS` in namespace `ns`; panics with the story when it fails.
    pub fn ip(&self, ns: &str, args: &[&str]) {
        let mut argv = vec!["ip"];
        argv.extend_from_slice(args);
        if let Err(e) = ns_exec(ns, &argv) {
            panic!("ip {args:?} in {ns}: {e}\n{}", self.story());
        }
    }

    /// SIGTERM to autossh, which must exit within `wait`; then, everything dropped, no
    /// process of the test's directory and no namespace of its network left.
    pub fn finish(self, wait: Duration) {
        self.autossh.signal(Signal::SIGTERM);
        let st = self.autossh.wait_timeout(wait);
        assert!(st.is_some(), "autossh ignored SIGTERM\n{}", self.story());
        let NsTunnel {
            autossh,
            sshd,
            echo,
            net,
            dir,
        } = self;
        let marker = dir.marker();
        let names = net.names();
        drop((autossh, sshd, echo, net, dir));
        if let Err(e) = test_support::no_process_left(&marker) {
            panic!("left behind: {e}");
        }
        let left: Vec<String> = netns_list()
            .into_iter()
            .filter(|n| names.contains(n))
            .collect();
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
    }
}
