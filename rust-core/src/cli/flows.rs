//! `phonehome flows`: stored flows (or DNS queries) as JSONL or CSV.

use std::io::Write;
use std::path::PathBuf;

use super::CliError;
use crate::store::{self, DnsFilter, FlowFilter, Reader, Window};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RowFormat {
    Jsonl,
    Csv,
}

impl From<RowFormat> for store::Format {
    fn from(f: RowFormat) -> store::Format {
        match f {
            RowFormat::Jsonl => store::Format::Jsonl,
            RowFormat::Csv => store::Format::Csv,
        }
    }
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Times are milliseconds since the Unix epoch; `src` is always the app's side of the flow.
JSONL keys: session, flow_id, uid, app, proto, src_ip, src_port, dst_ip, dst_port, hostname,
hostname_source, first_seen, last_seen, bytes_up, bytes_down, packets_up, packets_down,
close_reason, vendor, category, category_guessed, purpose, country, asn, as_name, cleartext,
leaks, l7, alpn, tls_version, ech, http_method, company, provider, descriptors,
http_requests. CSV has the same columns (lists joined by ';', http_requests as JSON).
With --dns: session, time, uid, app, flow_id, client_ip, client_port, server_ip, server_port,
transport, query, qtype, rcode, answers, answer_ips, ttl.

Examples:
  phonehome flows --db phonehome.db
  phonehome flows --db phonehome.db --format csv --session 3 > flows.csv
  phonehome flows --db phonehome.db --app com.miui.analytics --domain xiaomi.com
  phonehome flows --db phonehome.db --dns --format jsonl | jq .query")]
pub struct FlowsArgs {
    /// The PhoneHome database.
    #[arg(long, value_name = "FILE")]
    pub db: PathBuf,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: RowFormat,
    /// Only this session (see `phonehome report --db FILE` for the list).
    #[arg(long, value_name = "N")]
    pub session: Option<i64>,
    /// Print the DNS query log instead of flows.
    #[arg(long)]
    pub dns: bool,
    /// Only flows of this uid.
    #[arg(long)]
    pub uid: Option<u32>,
    /// Only flows of this app (package or user name, as stored).
    #[arg(long, conflicts_with = "dns")]
    pub app: Option<String>,
    /// Only flows to this host or its subdomains.
    #[arg(long, conflicts_with = "dns")]
    pub domain: Option<String>,
    /// At most this many records.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

/// Checks that `--session N` names a stored session.
pub(crate) fn check_session(reader: &Reader, flag: &str, id: i64) -> Result<(), CliError> {
    if reader.session(id)?.is_some() {
        return Ok(());
    }
    let ids: Vec<String> = reader
        .sessions()?
        .iter()
        .map(|s| s.id.to_string())
        .collect();
    let known = if ids.is_empty() {
        "none".to_string()
    } else {
        ids.join(", ")
    };
    Err(CliError::usage(format!(
        "{flag} {id}: no such session in {} (sessions: {known})",
        reader.path().display()
    )))
}

pub fn run(args: FlowsArgs) -> Result<i32, CliError> {
    let reader = Reader::open(&args.db)?;
    if let Some(id) = args.session {
        check_session(&reader, "--session", id)?;
    }
    let window = Window {
        session: args.session,
        ..Window::default()
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = if args.dns {
        let filter = DnsFilter {
            window,
            uid: args.uid,
            limit: args.limit,
        };
        store::write_dns(&reader, &filter, args.format.into(), &mut out)
    } else {
        let filter = FlowFilter {
            window,
            uid: args.uid,
            app: args.app,
            domain: args.domain,
            newest_first: false,
            limit: args.limit,
        };
        store::write_flows(&reader, &filter, args.format.into(), &mut out)
    };
    match result {
        Ok(_) => {}
        // `phonehome flows | head` closes the pipe early: not an error.
        Err(store::ExportError::Output(m)) if m.contains("Broken pipe") => return Ok(0),
        Err(e) => return Err(CliError::runtime(format!("writing rows: {e}"))),
    }
    out.flush().or_else(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    Ok(0)
}
