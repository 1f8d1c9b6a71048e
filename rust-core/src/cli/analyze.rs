//! `phonehome analyze FILE...`: captures through the engine in observe mode, into the database.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use super::CliError;
use crate::dissect::DeviceContext;
use crate::pcap::{self, ReadError};
use crate::store::report::counted;
use crate::store::{SessionInfo, StoreWriter};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    phonehome analyze capture.pcapng\n  \
    phonehome analyze --db redmi.db PCAPdroid_*.pcap\n  \
    phonehome analyze --device-ip 192.168.1.23 --device-model M2101K7BG capture.pcap\n\n\
    Each file becomes one session (kind \"analyze\") in the database, with the same flow, DNS and\n\
    app rows a live capture produces. pcap and pcapng are read, with Ethernet, raw IP, Linux SLL\n\
    and SLL2 and BSD loopback links; PCAPdroid's trailer and pcapng uid comments give each flow\n\
    its app. A damaged file keeps every flow read before the damage and exits with status 2.\n\n\
    The cleartext scan flags the phone's own addresses, model and OS build when it knows them:\n\
    from the --device-* flags, else (model and build) from the pcapng section header, where\n\
    PCAPdroid writes them as shb_hardware and shb_os.")]
pub struct AnalyzeArgs {
    /// pcap or pcapng files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The SQLite database (created when missing).
    #[arg(long, value_name = "FILE", default_value = "phonehome.db")]
    pub db: PathBuf,
    /// Country/ASN database (default: $PHONEHOME_GEO, then phonehome-geo.bin next to the binary).
    #[arg(long, value_name = "FILE")]
    pub geo: Option<PathBuf>,
    /// The phone's own address (repeatable), flagged when an app sends it in cleartext.
    #[arg(long = "device-ip", value_name = "ADDR")]
    pub device_ips: Vec<IpAddr>,
    /// The phone's model (Build.MODEL, e.g. M2101K7BG) [default: the pcapng shb_hardware].
    #[arg(long, value_name = "TEXT")]
    pub device_model: Option<String>,
    /// The phone's OS build (e.g. V14.0.3.0.TKHEUXM) [default: the pcapng shb_os].
    #[arg(long, value_name = "TEXT")]
    pub device_build: Option<String>,
    /// No progress bar or summary lines.
    #[arg(long, short)]
    pub quiet: bool,
}

fn progress_bar(len: u64, name: &str, quiet: bool) -> Option<ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_message(name.to_owned());
    Some(bar)
}

pub fn run(args: AnalyzeArgs) -> Result<i32, CliError> {
    crate::geo::init(args.geo.as_deref()).map_err(|e| CliError::new(1, e.to_string()))?;
    let mut status = 0;
    for path in &args.files {
        let name = path.display().to_string();
        // A file that is not a capture at all gets no session.
        let reader = match pcap::open(path) {
            Ok(reader) => reader,
            Err(ReadError::Io { source, .. }) => {
                eprintln!("phonehome: {name}: {source}");
                status = 1;
                continue;
            }
            Err(e) => {
                eprintln!("phonehome: {name}: {e}");
                status = 1;
                continue;
            }
        };
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let session = SessionInfo {
            kind: "analyze".into(),
            // The file's name only: its folders can name the user who published the report.
            note: Some(format!(
                "analyze {}",
                path.file_name()
                    .map_or(name.clone(), |f| f.to_string_lossy().into_owned())
            )),
            ..SessionInfo::default()
        };
        let store = StoreWriter::start(&args.db, session)?;
        let bar = progress_bar(len, &name, args.quiet);
        let started = Instant::now();
        let device = DeviceContext {
            own_ips: args.device_ips.clone(),
            model: args.device_model.clone(),
            os_version: args.device_build.clone(),
        };
        let report = pcap::observe_reader_with(reader, device, store.sender(), |offset| {
            if let Some(bar) = &bar {
                bar.set_position(offset);
            }
        });
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        // Whatever was observed is committed before any error is reported.
        store.finish()?;
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        let s = &report.stats;
        if !args.quiet {
            eprintln!(
                "{name}: {}, {}, {}, {:.1} MB/s -> {}",
                counted(s.frames, "packet", "packets"),
                counted(s.flows, "flow", "flows"),
                counted(s.dns_records, "DNS record", "DNS records"),
                report.bytes as f64 / 1e6 / secs,
                args.db.display()
            );
            for (link, count) in &s.unsupported_link {
                eprintln!("{name}: skipped {count} frames of unsupported link type {link}");
            }
        }
        if let Some(e) = report.error {
            let stored = match s.flows {
                1 => "the 1 flow read before it was stored".to_string(),
                n => format!("the {n} flows read before it were stored"),
            };
            eprintln!("phonehome: {name}: {e}; {stored}");
            status = status.max(2);
        }
    }
    Ok(status)
}
