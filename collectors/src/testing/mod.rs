//! Real servers on loopback for the tests and `unity bench` (feature `testing`): OpenSSH
//! (`sshd`), Pebble and knotd (`testbed`).

pub mod sshd;
pub mod testbed;
