//! The engine alone for measurements: like `phonehome capture` (a namespace whose traffic goes
//! through a TUN served by the engine) but without the store, so engine cost is measured apart.
//! Accepts `phonehome capture`'s flags that scripts/bench.sh passes, so it can stand in as
//! `PHONEHOME=target/release/examples/engine_capture scripts/bench.sh`.
//!
//! Usage: engine_capture capture [--quiet] [--mtu N] [--db IGNORED] [--dns-upstream ADDR] -- CMD...

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Command, ExitCode};
use std::sync::mpsc;

use phonehome::engine::{Engine, EngineConfig, Outbound, Tuning};
use phonehome::flow::Event;
use phonehome::linux::netns::{Namespace, NetConfig};
use phonehome::owner::ProcNet;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let (flags, command) = (&args[..split], args.get(split + 1..).unwrap_or(&[]));
    let upstream = flags
        .iter()
        .position(|a| a == "--dns-upstream")
        .and_then(|i| flags.get(i + 1))
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::new(198, 18, 0, 1), 53)));
    let Some((program, rest)) = command.split_first() else {
        eprintln!("engine_capture: no command given");
        return ExitCode::from(125);
    };
    // --mtu (as `phonehome capture`) or PH_MTU: the TUN's MTU (larger = fewer packets per byte).
    let mtu: u32 = flags
        .iter()
        .position(|a| a == "--mtu")
        .and_then(|i| flags.get(i + 1))
        .cloned()
        .or_else(|| std::env::var("PH_MTU").ok())
        .and_then(|m| m.parse().ok())
        .unwrap_or(1500);
    let net = NetConfig {
        tun_name: "phbench0".into(),
        mtu,
        addr_v4: Ipv4Addr::new(10, 215, 173, 1),
        addr_v6: Some(Ipv6Addr::new(0xfd00, 0x5048, 0, 0, 0, 0, 0, 1)),
        // As `phonehome capture`; PH_OFFLOAD=0 measures the TUN without segmentation offload.
        offload: std::env::var("PH_OFFLOAD").map_or(true, |v| v != "0"),
    };
    let (namespace, tun) = match Namespace::create(&net) {
        Ok(created) => created,
        Err(e) => {
            eprintln!("engine_capture: {e}");
            return ExitCode::from(125);
        }
    };
    let config = EngineConfig {
        dns_v4: Ipv4Addr::new(10, 215, 173, 2),
        dns_v6: Some(Ipv6Addr::new(0xfd00, 0x5048, 0, 0, 0, 0, 0, 2)),
        dns_upstream: upstream,
        mtu: mtu as usize,
        outbound: Outbound::default(),
    };
    let (events_tx, events_rx) = mpsc::channel();
    let counter = std::thread::spawn(move || {
        let (mut flows, mut closed, mut dns) = (0u64, 0u64, 0u64);
        for event in events_rx {
            match event {
                Event::Flow(_) => flows += 1,
                Event::FlowClosed(_) => closed += 1,
                Event::Dns(_) => dns += 1,
                Event::App { .. } => {}
            }
        }
        (flows, closed, dns)
    });
    let owner = Box::new(ProcNet::new(namespace.proc_net_dir()));
    // PH_RX / PH_TX: per-flow smoltcp ring sizes in KiB.
    let kib = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(default, |k| k * 1024)
    };
    let defaults = Tuning::default();
    let tuning = Tuning {
        shards: std::env::var("PH_SHARDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(defaults.shards),
        tcp_rx_buffer: kib("PH_RX", defaults.tcp_rx_buffer),
        tcp_tx_buffer: kib("PH_TX", defaults.tcp_tx_buffer),
        tun_offload: net.offload,
        ..defaults
    };
    let engine = match Engine::start_tuned(tun, config, tuning, owner, events_tx) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("engine_capture: starting the engine: {e}");
            return ExitCode::from(125);
        }
    };
    let mut cmd = Command::new(program);
    cmd.args(rest);
    let status = match namespace.run(move || cmd.spawn()) {
        Ok(Ok(mut child)) => child.wait().ok().and_then(|s| s.code()).unwrap_or(1),
        Ok(Err(e)) | Err(phonehome::linux::netns::NamespaceError::Io { source: e, .. }) => {
            eprintln!("engine_capture: {program}: {e}");
            127
        }
        Err(e) => {
            eprintln!("engine_capture: {e}");
            125
        }
    };
    match engine.stop() {
        Ok(stats) => eprintln!(
            "engine: {} flows, up {} B, down {} B, dropped {} packets",
            stats.flows_opened, stats.bytes_up, stats.bytes_down, stats.packets_dropped
        ),
        Err(e) => eprintln!("engine_capture: stopping the engine: {e}"),
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for line in status
            .lines()
            .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
        {
            eprintln!("{line}");
        }
    }
    if let Ok((flows, closed, dns)) = counter.join() {
        eprintln!("events: {flows} flow updates, {closed} closed, {dns} dns");
    }
    drop(namespace);
    ExitCode::from(status.clamp(0, 255) as u8)
}
