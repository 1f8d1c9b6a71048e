//! The servers of the test rig, run as threads inside the "server" namespace: HTTP (download of
//! generated or file bodies, upload with sha256), TCP echo, UDP echo and a DNS responder for
//! `*.phonehome.test`. Each TCP server records, per connection, the bytes it read and wrote: the
//! ground truth the engine's flow records are checked against.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub const HTTP_PORT: u16 = 80;
pub const ECHO_PORT: u16 = 7;
pub const DNS_PORT: u16 = 53;
/// Nothing listens here: connects are refused.
pub const CLOSED_PORT: u16 = 9;

/// What the server saw on one TCP connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnLog {
    pub server_port: u16,
    pub peer: SocketAddr,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The request line (HTTP) or None (echo).
    pub request: Option<String>,
    /// How the connection ended: "eof", or the error.
    pub end: String,
}

#[derive(Default)]
pub struct Logs {
    pub tcp: Mutex<Vec<ConnLog>>,
    pub udp_datagrams: Mutex<u64>,
    pub dns_queries: Mutex<Vec<String>>,
}

/// The running servers; stopped on drop.
pub struct Servers {
    pub logs: Arc<Logs>,
    stop: Arc<AtomicBool>,
    listeners: Vec<TcpListener>,
    threads: Vec<JoinHandle<()>>,
}

impl Servers {
    /// Starts every server on a thread that first joins the network namespace at `netns_path`
    /// (`/run/netns/NAME`). `files` is served under `/files/NAME`.
    pub fn start(netns_path: PathBuf, files: PathBuf) -> io::Result<Servers> {
        let logs = Arc::new(Logs::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let setup = {
            let logs = logs.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let result = (|| -> io::Result<(Vec<TcpListener>, Vec<JoinHandle<()>>)> {
                    enter_netns(&netns_path)?;
                    let any = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0));
                    let http = TcpListener::bind(SocketAddr::new(any.ip(), HTTP_PORT))?;
                    let echo = TcpListener::bind(SocketAddr::new(any.ip(), ECHO_PORT))?;
                    let udp = UdpSocket::bind(SocketAddr::new(any.ip(), ECHO_PORT))?;
                    let dns = UdpSocket::bind(SocketAddr::new(any.ip(), DNS_PORT))?;
                    let dns_tcp = TcpListener::bind(SocketAddr::new(any.ip(), DNS_PORT))?;
                    for s in [&udp, &dns] {
                        s.set_read_timeout(Some(Duration::from_millis(200)))?;
                    }
                    let mut threads = Vec::new();
                    let files = Arc::new(files);
                    threads.push(accept_loop(
                        http.try_clone()?,
                        logs.clone(),
                        move |s, l, _| serve_http(s, l, &files),
                    ));
                    threads.push(accept_loop(echo.try_clone()?, logs.clone(), |s, l, _| {
                        serve_echo(s, l)
                    }));
                    threads.push(udp_loop(udp, stop.clone(), logs.clone(), |_, d| {
                        Some(d.to_vec())
                    }));
                    threads.push(udp_loop(dns, stop.clone(), logs.clone(), answer_dns));
                    threads.push(accept_loop(
                        dns_tcp.try_clone()?,
                        logs.clone(),
                        serve_dns_tcp,
                    ));
                    Ok((vec![http, echo, dns_tcp], threads))
                })();
                let _ = tx.send(result);
            })
        };
        let (listeners, threads) = rx
            .recv()
            .map_err(|_| io::Error::other("server setup thread died"))??;
        let _ = setup.join();
        Ok(Servers {
            logs,
            stop,
            listeners,
            threads,
        })
    }

    pub fn tcp_logs(&self) -> Vec<ConnLog> {
        self.logs.tcp.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits (bounded) until `n` TCP connections have ended, and returns their logs.
    pub fn wait_tcp_logs(&self, n: usize, timeout: Duration) -> Vec<ConnLog> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let logs = self.tcp_logs();
            if logs.len() >= n || std::time::Instant::now() > deadline {
                return logs;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for l in &self.listeners {
            // Wakes the thread blocked in accept() (Linux returns EINVAL from it).
            unsafe { libc::shutdown(l.as_raw_fd(), libc::SHUT_RDWR) };
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

pub fn enter_netns(path: &std::path::Path) -> io::Result<()> {
    let ns = std::fs::File::open(path)?;
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn accept_loop(
    listener: TcpListener,
    logs: Arc<Logs>,
    handler: impl Fn(&mut TcpStream, &mut ConnLog, &Logs) -> io::Result<()> + Send + Sync + 'static,
) -> JoinHandle<()> {
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        while let Ok((mut stream, peer)) = listener.accept() {
            let handler = handler.clone();
            let logs = logs.clone();
            let _ = std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                    let mut log = ConnLog {
                        server_port: port,
                        peer,
                        bytes_in: 0,
                        bytes_out: 0,
                        request: None,
                        end: String::new(),
                    };
                    log.end = match handler(&mut stream, &mut log, &logs) {
                        Ok(()) => "eof".into(),
                        Err(e) => e.to_string(),
                    };
                    if let Ok(mut l) = logs.tcp.lock() {
                        l.push(log);
                    }
                });
        }
    })
}

fn serve_echo(stream: &mut TcpStream, log: &mut ConnLog) -> io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        log.bytes_in += n as u64;
        stream.write_all(&buf[..n])?;
        log.bytes_out += n as u64;
    }
}

/// DNS over TCP (RFC 1035 4.2.2): two-byte length, then the message; several per connection.
fn serve_dns_tcp(stream: &mut TcpStream, log: &mut ConnLog, logs: &Logs) -> io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match stream.read_exact(&mut len) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            other => other?,
        }
        let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut query)?;
        log.bytes_in += 2 + query.len() as u64;
        let answer = answer_dns(logs, &query).ok_or_else(|| io::Error::other("bad DNS query"))?;
        let mut out = (answer.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&answer);
        stream.write_all(&out)?;
        log.bytes_out += out.len() as u64;
    }
}

/// `GET /blob/N` (N generated bytes), `GET /files/NAME`, `POST /upload` (replies with the body's
/// sha256 and length). One request per connection.
fn serve_http(
    stream: &mut TcpStream,
    log: &mut ConnLog,
    files: &std::path::Path,
) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut head = Vec::new();
    let mut content_length = 0u64;
    let mut expect_continue = false;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "eof in request head",
            ));
        }
        log.bytes_in += n as u64;
        let trimmed = line.trim_end().to_string();
        if trimmed.is_empty() {
            break;
        }
        let lower = trimmed.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("expect:") && lower.contains("100-continue") {
            expect_continue = true;
        }
        head.push(trimmed);
    }
    let request = head.first().cloned().unwrap_or_default();
    log.request = Some(request.clone());
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let send = |stream: &mut TcpStream, bytes: &[u8], log: &mut ConnLog| -> io::Result<()> {
        stream.write_all(bytes)?;
        log.bytes_out += bytes.len() as u64;
        Ok(())
    };
    match (method, path) {
        ("GET", p) if p.starts_with("/blob/") => {
            let n: u64 = p["/blob/".len()..].parse().unwrap_or(0);
            send(
                stream,
                format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
                log,
            )?;
            let mut chunk = vec![0u8; 64 * 1024];
            let mut sent = 0u64;
            while sent < n {
                let len = (n - sent).min(chunk.len() as u64) as usize;
                for (i, b) in chunk[..len].iter_mut().enumerate() {
                    *b = ((sent + i as u64) % 251) as u8;
                }
                send(stream, &chunk[..len], log)?;
                sent += len as u64;
            }
        }
        ("GET", p) if p.starts_with("/files/") => {
            let name = &p["/files/".len()..];
            let mut file = std::fs::File::open(files.join(name.replace('/', "")))?;
            let n = file.metadata()?.len();
            send(
                stream,
                format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
                log,
            )?;
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let len = file.read(&mut chunk)?;
                if len == 0 {
                    break;
                }
                send(stream, &chunk[..len], log)?;
            }
        }
        ("POST", "/upload") => {
            if expect_continue {
                send(stream, b"HTTP/1.1 100 Continue\r\n\r\n", log)?;
            }
            let mut hasher = Command::new("sha256sum")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            let mut stdin = hasher
                .stdin
                .take()
                .ok_or_else(|| io::Error::other("sha256sum stdin"))?;
            let mut chunk = vec![0u8; 64 * 1024];
            let mut left = content_length;
            while left > 0 {
                let want = left.min(chunk.len() as u64) as usize;
                let n = reader.read(&mut chunk[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "eof in upload body",
                    ));
                }
                log.bytes_in += n as u64;
                stdin.write_all(&chunk[..n])?;
                left -= n as u64;
            }
            drop(stdin);
            let out = hasher.wait_with_output()?;
            let hash = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string();
            let body = format!("{hash} {content_length}\n");
            send(
                stream,
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
                log,
            )?;
        }
        _ => {
            send(
                stream,
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                log,
            )?;
        }
    }
    stream.shutdown(Shutdown::Write)?;
    // Wait for the client's close so bytes_in counts everything it sent.
    let mut rest = Vec::new();
    let n = reader.read_to_end(&mut rest)?;
    log.bytes_in += n as u64;
    Ok(())
}

fn udp_loop(
    socket: UdpSocket,
    stop: Arc<AtomicBool>,
    logs: Arc<Logs>,
    reply: impl Fn(&Logs, &[u8]) -> Option<Vec<u8>> + Send + 'static,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::SeqCst) {
            match socket.recv_from(&mut buf) {
                Ok((n, peer)) => {
                    if let Ok(mut c) = logs.udp_datagrams.lock() {
                        *c += 1;
                    }
                    if let Some(answer) = reply(&logs, &buf[..n]) {
                        let _ = socket.send_to(&answer, peer);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
    })
}

pub const TEST_DOMAIN: &str = "phonehome.test";
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 1);

/// Answers A and AAAA for names under `phonehome.test` with the server's addresses, NXDOMAIN
/// for anything else. Handles exactly one question, as stub resolvers send.
fn answer_dns(logs: &Logs, query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
    let question_end = pos + 4;
    let name = labels.join(".");
    if let Ok(mut q) = logs.dns_queries.lock() {
        q.push(format!("{name} {qtype}"));
    }
    let ours = name == TEST_DOMAIN || name.ends_with(&format!(".{TEST_DOMAIN}"));
    let rdata: Option<Vec<u8>> = match (ours, qtype) {
        (true, 1) => Some(SERVER_V4.octets().to_vec()),
        (true, 28) => Some(SERVER_V6.octets().to_vec()),
        _ => None,
    };
    let mut out = query.get(..question_end)?.to_vec();
    out[2] = 0x80 | (query[2] & 0x01); // QR, keep RD
    out[3] = 0x80 | if ours { 0 } else { 3 }; // RA, NOERROR / NXDOMAIN
    out[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if let Some(rdata) = rdata {
        out[7] = 1;
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}
