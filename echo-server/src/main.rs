//! autossh-echo: the echo companion deployed on the remote host (skeleton).
fn main() {}
