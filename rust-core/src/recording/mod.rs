//! One recording as the live relay's drivers run it: the engine on a TUN, and its events fanned
//! out to the store and to the driver's own observer (the app's live view, the CLI's summary).
//!
//! The Android session and `phonehome capture` start and stop through [`Recording`], so the
//! order that keeps the last events (engine stopped and flushed before the fan-out drains, the
//! fan-out drained before the store closes) and the clean-up of a failed start are written once.
//! DNS upstream text and the device context the cleartext scan looks for are read here too.

mod device;
mod fanout;
mod upstream;

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::mpsc;

use crate::engine::{Engine, EngineConfig, EngineStats, Tuning};
use crate::owner::OwnerLookup;
use crate::store::StoreWriter;

pub use device::{BuildFacts, device_context};
pub use fanout::EventSink;
pub use upstream::parse_upstream;

use fanout::Fanout;

/// A running engine and the fan-out of its events.
pub struct Recording<S: EventSink> {
    engine: Engine,
    fanout: Fanout<S>,
}

/// Why a recording did not start; what was started is stopped again.
#[derive(Debug)]
pub enum StartError {
    /// The fan-out thread could not be spawned.
    Fanout(io::Error),
    /// The engine refused the configuration or could not start its thread.
    Engine(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Fanout(e) => write!(f, "cannot start the event thread: {e}"),
            StartError::Engine(e) => write!(f, "engine did not start: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// What a stopped recording leaves: the engine's final counters and the observer, which has seen
/// every event the engine sent (or the reason it has not).
pub struct Stopped<S> {
    pub engine: io::Result<EngineStats>,
    pub sink: Result<S, FanoutPanicked>,
}

/// The fan-out thread panicked (in the observer): the observer is lost; the store got the events
/// passed on before the panic.
#[derive(Debug)]
pub struct FanoutPanicked;

impl fmt::Display for FanoutPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the event thread panicked")
    }
}

impl<S: EventSink> Recording<S> {
    /// Starts the fan-out (every event to `sink`, then to `store`) and the engine on `tun`, which
    /// the engine owns from here on (closed on stop, or right away if the start fails).
    pub fn start(
        tun: OwnedFd,
        config: EngineConfig,
        tuning: Tuning,
        owner: Box<dyn OwnerLookup>,
        store: &StoreWriter,
        sink: S,
    ) -> Result<Recording<S>, StartError> {
        let (events_tx, events_rx) = mpsc::channel();
        let fanout = Fanout::spawn(events_rx, store.sender(), sink).map_err(StartError::Fanout)?;
        match Engine::start_tuned(tun, config, tuning, owner, events_tx) {
            Ok(engine) => Ok(Recording { engine, fanout }),
            Err(err) => {
                let _ = fanout.finish();
                Err(StartError::Engine(err))
            }
        }
    }

    /// The running engine, for its counters and its DNS upstream.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Stops the engine (every open flow closed, final events sent), then lets the fan-out pass
    /// the last of them on. The store is the caller's to finish afterwards.
    pub fn stop(self) -> Stopped<S> {
        let engine = self.engine.stop();
        let sink = self.fanout.finish();
        Stopped { engine, sink }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Outbound;
    use crate::flow::Event;
    use crate::store::{Reader, SessionInfo};
    use std::net::Ipv4Addr;
    use std::os::fd::FromRawFd;

    /// Counts what it sees, and panics on the n-th event when asked to.
    struct Counter {
        seen: usize,
        panic_at: Option<usize>,
    }

    /// A fan-out from a fresh channel to `store` and a [`Counter`] that panics at `panic_at`.
    fn counting_fanout(
        store: &StoreWriter,
        panic_at: Option<usize>,
    ) -> (mpsc::Sender<Event>, Fanout<Counter>) {
        let (events_tx, events_rx) = mpsc::channel();
        let counter = Counter { seen: 0, panic_at };
        let fanout = Fanout::spawn(events_rx, store.sender(), counter).unwrap();
        (events_tx, fanout)
    }

    impl EventSink for Counter {
        fn apply(&mut self, _event: &Event) {
            self.seen += 1;
            if Some(self.seen) == self.panic_at {
                panic!("observer failure on event {}", self.seen);
            }
        }
    }

    struct NoOwner;

    impl crate::owner::OwnerLookup for NoOwner {
        fn owner_uid(
            &mut self,
            _proto: crate::flow::Proto,
            _local: std::net::SocketAddr,
            _remote: std::net::SocketAddr,
        ) -> Option<u32> {
            None
        }

        fn app_name(&mut self, _uid: u32) -> Option<String> {
            None
        }
    }

    fn socketpair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair fills two fds we then own.
        let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: both fds were just created and are owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn config(mtu: usize) -> EngineConfig {
        EngineConfig {
            dns_v4: Ipv4Addr::new(198, 18, 0, 53),
            dns_v6: None,
            dns_upstream: "127.0.0.1:9".parse().unwrap(),
            mtu,
            outbound: Outbound::default(),
        }
    }

    #[test]
    fn a_refused_start_stops_the_fan_out_and_leaves_the_store_usable() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.db");
        let store = StoreWriter::start(&db, SessionInfo::default()).unwrap();
        let (tun, _app) = socketpair();
        let counter = Counter {
            seen: 0,
            panic_at: None,
        };
        let err = match Recording::start(
            tun,
            config(100),
            Tuning::default(),
            Box::new(NoOwner),
            &store,
            counter,
        ) {
            Err(err) => err,
            Ok(_) => panic!("an MTU of 100 must be refused"),
        };
        assert!(
            matches!(err, StartError::Engine(_)) && err.to_string().contains("MTU"),
            "{err}"
        );
        store.finish().unwrap();
        assert_eq!(Reader::open(&db).unwrap().sessions().unwrap().len(), 1);
    }

    #[test]
    fn the_fan_out_hands_every_event_to_the_observer_and_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.db");
        let store = StoreWriter::start(&db, SessionInfo::default()).unwrap();
        let (events_tx, fanout) = counting_fanout(&store, None);
        for uid in [10_001, 10_002, 10_003] {
            events_tx
                .send(Event::App {
                    uid,
                    name: format!("app.{uid}"),
                })
                .unwrap();
        }
        // A sender still alive (a helper thread's clone): finish must not wait for it.
        let counter = fanout.finish().unwrap();
        assert_eq!(counter.seen, 3);
        let session = store.session_id();
        store.finish().unwrap();
        let apps = Reader::open(&db).unwrap().apps(session).unwrap();
        assert_eq!(apps.len(), 3, "{apps:?}");
        drop(events_tx);
    }

    #[test]
    fn an_observer_that_panics_is_reported_not_propagated() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreWriter::start(&dir.path().join("r.db"), SessionInfo::default()).unwrap();
        let (events_tx, fanout) = counting_fanout(&store, Some(1));
        events_tx
            .send(Event::App {
                uid: 10_001,
                name: "a".into(),
            })
            .unwrap();
        drop(events_tx);
        assert!(fanout.finish().is_err());
        store.finish().unwrap();
    }
}
