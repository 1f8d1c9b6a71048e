//! PhoneHome's engine: terminates every TCP/UDP flow of a tun device in a userspace stack,
//! relays it, attributes it to an app, names and classifies its destination, and stores it.
//!
//! The engine is sans-IO where it can be: state machines fed packets, bytes and time. Drivers
//! (`linux` TUN in a network namespace, `android` JNI, `pcap` replay) do the I/O.
//! See docs/ARCHITECTURE.md for the map.

pub mod catalog;
pub mod company;
pub mod dissect;
pub mod engine;
pub mod flow;
pub mod geo;
pub mod naming;
pub mod owner;
pub mod pcap;
pub mod recording;
pub mod store;

#[cfg(target_os = "linux")]
pub mod linux;

#[cfg(feature = "cli")]
pub mod cli;

#[cfg(feature = "proto")]
pub mod android;
