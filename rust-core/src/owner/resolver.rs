//! The owner-lookup helper thread. The packet loop sends requests and never waits: results come
//! back on a channel and a mio `Waker` tells the loop to collect them. A lookup that misses (the
//! socket may not be visible yet at SYN time) is retried once shortly after.
//!
//! Where the lookup has a non-blocking form ([`OwnerLookup::immediate`]), the loop asks it first
//! ([`OwnerClient::owner_now`]) and only what it cannot answer goes to the thread.
//!
//! The thread also names each new UID once (`Event::App`), from its cache.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::flow::{Event, FlowId, Proto};

use super::{ImmediateOwner, OwnerLookup};

/// Delay before the single retry of a missed lookup.
const RETRY_AFTER: Duration = Duration::from_millis(30);

struct Request {
    flow: FlowId,
    proto: Proto,
    local: SocketAddr,
    remote: SocketAddr,
}

enum Job {
    Lookup(Request),
    /// A UID the loop found itself: announce it (`Event::App`) if it is new.
    Name(u32),
}

/// The loop's side: ask at once where possible, else send requests and collect results.
pub struct OwnerClient {
    requests: Sender<Job>,
    results: Receiver<(FlowId, Option<u32>)>,
    immediate: Option<Box<dyn ImmediateOwner>>,
    /// UIDs found by `owner_now` and sent to the thread to be named.
    named: HashSet<u32>,
}

impl OwnerClient {
    /// The owner, if the non-blocking lookup can tell it now. None: use [`request`](Self::request).
    pub fn owner_now(
        &mut self,
        proto: Proto,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<u32> {
        let uid = self
            .immediate
            .as_mut()?
            .owner_uid_now(proto, local, remote)?;
        if self.named.insert(uid) {
            let _ = self.requests.send(Job::Name(uid));
        }
        Some(uid)
    }

    pub fn request(&self, flow: FlowId, proto: Proto, local: SocketAddr, remote: SocketAddr) {
        let _ = self.requests.send(Job::Lookup(Request {
            flow,
            proto,
            local,
            remote,
        }));
    }

    /// Results that arrived since the last call: the uid, or None once the lookup and its
    /// retry both missed.
    pub fn results(&self) -> impl Iterator<Item = (FlowId, Option<u32>)> + '_ {
        self.results.try_iter()
    }
}

/// Anything that can nudge the loop when a result is ready.
pub trait Wake: Send + Sync {
    fn wake(&self);
}

impl Wake for mio::Waker {
    fn wake(&self) {
        let _ = mio::Waker::wake(self);
    }
}

pub struct OwnerResolver;

impl OwnerResolver {
    /// Start the helper thread. It ends when the client is dropped.
    pub fn spawn(
        mut lookup: Box<dyn OwnerLookup>,
        events: Sender<Event>,
        waker: Arc<dyn Wake>,
    ) -> io::Result<OwnerClient> {
        let immediate = lookup.immediate();
        let (requests, request_rx) = mpsc::channel();
        let (result_tx, results) = mpsc::channel();
        std::thread::Builder::new()
            .name("phonehome-owner".into())
            .spawn(move || {
                Worker {
                    lookup,
                    events,
                    waker,
                    results: result_tx,
                    named: HashSet::new(),
                }
                .run(request_rx)
            })?;
        Ok(OwnerClient {
            requests,
            results,
            immediate,
            named: HashSet::new(),
        })
    }
}

struct Worker {
    lookup: Box<dyn OwnerLookup>,
    events: Sender<Event>,
    waker: Arc<dyn Wake>,
    results: Sender<(FlowId, Option<u32>)>,
    /// UIDs already announced with `Event::App`.
    named: HashSet<u32>,
}

impl Worker {
    fn run(mut self, requests: Receiver<Job>) {
        let mut retries: VecDeque<(Instant, Request)> = VecDeque::new();
        loop {
            let wait = retries
                .front()
                .map(|(at, _)| at.saturating_duration_since(Instant::now()));
            let next = match wait {
                Some(wait) => requests.recv_timeout(wait),
                None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match next {
                Ok(job) => {
                    // Everything pending now is one batch: a table-reading lookup reads each
                    // table once for all of it.
                    let mut batch = Vec::new();
                    for job in std::iter::once(job).chain(requests.try_iter()) {
                        match job {
                            Job::Lookup(request) => batch.push(request),
                            Job::Name(uid) => self.announce(uid),
                        }
                    }
                    let now = Instant::now();
                    let resolved = if batch.is_empty() {
                        Vec::new()
                    } else {
                        self.resolve(batch)
                    };
                    for (request, found) in resolved {
                        if !found {
                            retries.push_back((now + RETRY_AFTER, request));
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let mut due = Vec::new();
            while retries.front().is_some_and(|(at, _)| *at <= Instant::now()) {
                if let Some((_, request)) = retries.pop_front() {
                    due.push(request);
                }
            }
            if !due.is_empty() {
                for (request, found) in self.resolve(due) {
                    if !found && self.results.send((request.flow, None)).is_ok() {
                        self.waker.wake();
                    }
                }
            }
        }
    }

    /// Name a UID once (`Event::App`).
    fn announce(&mut self, uid: u32) {
        if self.named.insert(uid)
            && let Some(name) = self.lookup.app_name(uid)
        {
            let _ = self.events.send(Event::App { uid, name });
        }
    }

    /// Look up the owners of a batch; each request comes back with whether it was found.
    fn resolve(&mut self, batch: Vec<Request>) -> Vec<(Request, bool)> {
        let keys: Vec<(Proto, SocketAddr, SocketAddr)> =
            batch.iter().map(|r| (r.proto, r.local, r.remote)).collect();
        let uids = self.lookup.owner_uids(&keys);
        let mut answered = false;
        let mut out = Vec::with_capacity(batch.len());
        for (request, uid) in batch.into_iter().zip(uids) {
            let Some(uid) = uid else {
                out.push((request, false));
                continue;
            };
            self.announce(uid);
            answered |= self.results.send((request.flow, Some(uid))).is_ok();
            out.push((request, true));
        }
        if answered {
            self.waker.wake();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Flaky {
        calls: Arc<Mutex<u32>>,
    }

    impl OwnerLookup for Flaky {
        fn owner_uid(&mut self, _: Proto, local: SocketAddr, _: SocketAddr) -> Option<u32> {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            // The first lookup of port 1000 misses, as a SYN racing the procfs entry would.
            if local.port() == 1000 && *calls == 1 {
                None
            } else {
                Some(u32::from(local.port()))
            }
        }
        fn app_name(&mut self, uid: u32) -> Option<String> {
            Some(format!("user{uid}"))
        }
    }

    struct NoWake;
    impl Wake for NoWake {
        fn wake(&self) {}
    }

    /// Knows TCP port 2000 at once (as a sock_diag socket does); nothing else.
    struct Quick;
    impl ImmediateOwner for Quick {
        fn owner_uid_now(&mut self, proto: Proto, local: SocketAddr, _: SocketAddr) -> Option<u32> {
            (proto == Proto::Tcp && local.port() == 2000).then_some(7)
        }
    }

    struct WithQuick(Flaky);
    impl OwnerLookup for WithQuick {
        fn owner_uid(
            &mut self,
            proto: Proto,
            local: SocketAddr,
            remote: SocketAddr,
        ) -> Option<u32> {
            self.0.owner_uid(proto, local, remote)
        }
        fn app_name(&mut self, uid: u32) -> Option<String> {
            self.0.app_name(uid)
        }
        fn immediate(&mut self) -> Option<Box<dyn ImmediateOwner>> {
            Some(Box::new(Quick))
        }
    }

    #[test]
    fn immediate_answers_skip_the_thread_and_still_name_the_app_once() {
        let calls = Arc::new(Mutex::new(0));
        let (events, event_rx) = mpsc::channel();
        let mut client = OwnerResolver::spawn(
            Box::new(WithQuick(Flaky {
                calls: Arc::clone(&calls),
            })),
            events,
            Arc::new(NoWake),
        )
        .unwrap();
        let known: SocketAddr = "198.18.0.2:2000".parse().unwrap();
        let other: SocketAddr = "198.18.0.2:2001".parse().unwrap();
        let server: SocketAddr = "198.18.0.1:80".parse().unwrap();
        assert_eq!(client.owner_now(Proto::Tcp, known, server), Some(7));
        assert_eq!(client.owner_now(Proto::Tcp, known, server), Some(7));
        assert_eq!(client.owner_now(Proto::Tcp, other, server), None);
        assert_eq!(client.owner_now(Proto::Udp, known, server), None);
        // The thread names uid 7 once; answers it found itself would arrive as results.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut apps = Vec::new();
        while apps.is_empty() && Instant::now() < deadline {
            apps.extend(event_rx.try_iter());
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(client);
        apps.extend(event_rx.iter());
        assert_eq!(
            apps,
            vec![Event::App {
                uid: 7,
                name: "user7".into()
            }]
        );
        assert_eq!(
            *calls.lock().unwrap(),
            0,
            "the thread looked up what was answered at once"
        );
    }

    #[test]
    fn misses_are_retried_once_and_apps_named_once() {
        let calls = Arc::new(Mutex::new(0));
        let (events, event_rx) = mpsc::channel();
        let client = OwnerResolver::spawn(
            Box::new(Flaky {
                calls: Arc::clone(&calls),
            }),
            events,
            Arc::new(NoWake),
        )
        .unwrap();
        let a: SocketAddr = "198.18.0.2:1000".parse().unwrap();
        let b: SocketAddr = "198.18.0.2:1001".parse().unwrap();
        let server: SocketAddr = "198.18.0.1:80".parse().unwrap();
        client.request(1, Proto::Tcp, a, server);
        client.request(2, Proto::Tcp, b, server);
        client.request(3, Proto::Tcp, b, server);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 3 && Instant::now() < deadline {
            got.extend(client.results());
            std::thread::sleep(Duration::from_millis(5));
        }
        got.sort();
        assert_eq!(got, vec![(1, Some(1000)), (2, Some(1001)), (3, Some(1001))]);
        assert_eq!(*calls.lock().unwrap(), 4);
        let apps: Vec<Event> = event_rx.try_iter().collect();
        assert_eq!(apps.len(), 2);
        assert!(apps.contains(&Event::App {
            uid: 1001,
            name: "user1001".into()
        }));
    }
}
