//! Real servers on loopback for the tests and `unity bench` (feature `testing`): OpenSSH
//! (`sshd`, and `host`: one whose sessions see a /proc and tools of the test's choosing), Pebble
//! and knotd (`testbed`).

pub mod host;
pub mod sshd;
pub mod testbed;
