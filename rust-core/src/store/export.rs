//! Row exports: flows and DNS as JSONL (one object a line) or CSV (header + rows).
//!
//! JSONL keys are the field names of [`FlowRow`] / [`DnsRow`]; CSV has the same columns in
//! [`FLOW_COLUMNS`] / [`DNS_COLUMNS`] order, lists joined with ';', absent values empty.

use std::io::Write;

use super::StoreError;
use super::read::{DnsFilter, DnsRow, FlowFilter, FlowRow, Reader};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

/// CSV header of a flow export (the JSONL keys, in this order).
pub const FLOW_COLUMNS: &[&str] = &[
    "session",
    "flow_id",
    "uid",
    "app",
    "proto",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "hostname",
    "hostname_source",
    "first_seen",
    "last_seen",
    "bytes_up",
    "bytes_down",
    "packets_up",
    "packets_down",
    "close_reason",
    "vendor",
    "category",
    "category_guessed",
    "purpose",
    "country",
    "asn",
    "as_name",
    "cleartext",
    "leaks",
    "l7",
    "alpn",
    "tls_version",
    "ech",
    "http_method",
    "company",
    "provider",
    "descriptors",
    "http_requests",
];

pub const DNS_COLUMNS: &[&str] = &[
    "session",
    "time",
    "uid",
    "app",
    "flow_id",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "transport",
    "query",
    "qtype",
    "rcode",
    "answers",
    "answer_ips",
    "ttl",
];

/// Why an export stopped: the database, or the output (a closed pipe, a full disk).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Output(String),
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

fn flow_record(f: &FlowRow) -> Vec<String> {
    vec![
        f.session.to_string(),
        f.flow_id.to_string(),
        opt(&f.uid),
        opt(&f.app),
        f.proto.clone(),
        f.src_ip.clone(),
        f.src_port.to_string(),
        f.dst_ip.clone(),
        f.dst_port.to_string(),
        opt(&f.hostname),
        opt(&f.hostname_source),
        f.first_seen.to_string(),
        f.last_seen.to_string(),
        f.bytes_up.to_string(),
        f.bytes_down.to_string(),
        f.packets_up.to_string(),
        f.packets_down.to_string(),
        opt(&f.close_reason),
        opt(&f.vendor),
        opt(&f.category),
        f.category_guessed.to_string(),
        opt(&f.purpose),
        opt(&f.country),
        opt(&f.asn),
        opt(&f.as_name),
        f.cleartext.to_string(),
        f.leaks.join(";"),
        opt(&f.l7),
        f.alpn.join(";"),
        opt(&f.tls_version),
        f.ech.to_string(),
        opt(&f.http_method),
        opt(&f.company),
        opt(&f.provider),
        f.descriptors.join(";"),
        // One cell: the requests as a JSON array (empty when none).
        if f.http_requests.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&f.http_requests).unwrap_or_default()
        },
    ]
}

fn dns_record(d: &DnsRow) -> Vec<String> {
    vec![
        d.session.to_string(),
        d.time.to_string(),
        opt(&d.uid),
        opt(&d.app),
        opt(&d.flow_id),
        d.client_ip.clone(),
        d.client_port.to_string(),
        d.server_ip.clone(),
        d.server_port.to_string(),
        d.transport.clone(),
        d.query.clone(),
        d.qtype.to_string(),
        opt(&d.rcode),
        d.answers.join(";"),
        d.answer_ips.join(";"),
        opt(&d.ttl),
    ]
}

fn output(e: impl std::fmt::Display) -> ExportError {
    ExportError::Output(e.to_string())
}

/// Writes the flows matching `filter`; returns how many.
pub fn write_flows(
    reader: &Reader,
    filter: &FlowFilter,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    write_rows(format, FLOW_COLUMNS, flow_record, out, |each| {
        reader.for_each_flow(filter, each)
    })
}

/// Writes the DNS rows matching `filter`; returns how many.
pub fn write_dns(
    reader: &Reader,
    filter: &DnsFilter,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    write_rows(format, DNS_COLUMNS, dns_record, out, |each| {
        reader.for_each_dns(filter, each)
    })
}

/// Where [`write_rows`] takes each row.
type RowSink<'a, Row> = dyn FnMut(Row) -> Result<(), ExportError> + 'a;

/// Streams the rows `for_each_row` yields to `out` as JSONL, or as CSV with `columns` as header
/// and `record` giving each row's fields; returns how many rows.
fn write_rows<Row: serde::Serialize>(
    format: Format,
    columns: &[&str],
    record: fn(&Row) -> Vec<String>,
    out: &mut dyn Write,
    for_each_row: impl FnOnce(&mut RowSink<'_, Row>) -> Result<(), ExportError>,
) -> Result<u64, ExportError> {
    let mut count = 0u64;
    match format {
        Format::Jsonl => {
            for_each_row(&mut |row| {
                serde_json::to_writer(&mut *out, &row).map_err(output)?;
                out.write_all(b"\n").map_err(output)?;
                count += 1;
                Ok(())
            })?;
            out.flush().map_err(output)?;
        }
        Format::Csv => {
            let mut csv = csv::Writer::from_writer(&mut *out);
            csv.write_record(columns).map_err(output)?;
            for_each_row(&mut |row| {
                csv.write_record(record(&row)).map_err(output)?;
                count += 1;
                Ok(())
            })?;
            csv.flush().map_err(output)?;
        }
    }
    Ok(count)
}
