//! The Linux driver: a TUN device in a fresh network namespace, and the captured command started
//! inside it. The engine (in the parent namespace) serves the TUN; see `cli::capture`.

pub mod child;
pub mod netns;
pub mod resolv;
pub mod tun;
pub mod user;
