//! Held forwards against a real private sshd: autossh listens in ssh's place, connections
//! made while ssh is away wait instead of being refused, a planned restart cuts no
//! connection, bytes arrive whole, and bad forwards stop autossh before anything starts.

mod bind;
mod data;
mod lifecycle;
mod rig;
mod waiting;
