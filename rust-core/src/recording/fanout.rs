//! The fan-out thread between the engine and the store: each event goes to the driver's
//! observer first (the live view must not lag the database), then on to the store writer.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::flow::Event;

use super::FanoutPanicked;

/// The pause once the queue is empty (see the loop below).
const BURST_PAUSE: Duration = Duration::from_millis(10);
/// How often an idle fan-out looks whether it was asked to stop.
const STOP_POLL: Duration = Duration::from_millis(200);

/// A driver's view of the engine's events (the app's live view, the CLI's summary). It runs on
/// the fan-out thread and is handed back when the recording stops.
pub trait EventSink: Send + 'static {
    fn apply(&mut self, event: &Event);
}

pub(super) struct Fanout<S> {
    thread: JoinHandle<S>,
    stop: Arc<AtomicBool>,
}

impl<S: EventSink> Fanout<S> {
    pub(super) fn spawn(
        events: Receiver<Event>,
        store: Sender<Event>,
        mut sink: S,
    ) -> io::Result<Fanout<S>> {
        let stop = Arc::new(AtomicBool::new(false));
        let asked = stop.clone();
        let thread = std::thread::Builder::new()
            .name("phonehome-events".into())
            .spawn(move || {
                let mut pass = |event: Event| {
                    sink.apply(&event);
                    // A store that stopped early reports its error from finish(); keep draining.
                    let _ = store.send(event);
                };
                // Until every sender is gone, or a stop was asked: then only what is queued.
                // The stop matters when a sender outlives the engine (a helper thread's clone).
                // What is queued is taken without a timed wait (no clock read per event).
                loop {
                    let next = match events.try_recv() {
                        Ok(event) => Ok(event),
                        Err(TryRecvError::Disconnected) => break,
                        Err(TryRecvError::Empty) => {
                            // Events come in bursts (a short connection opens and closes
                            // within a millisecond): pause before waiting, so a burst costs
                            // one wake-up of this thread rather than one per event.
                            std::thread::sleep(BURST_PAUSE);
                            events.recv_timeout(STOP_POLL)
                        }
                    };
                    match next {
                        Ok(event) => pass(event),
                        Err(RecvTimeoutError::Disconnected) => break,
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                    if asked.load(Ordering::Acquire) {
                        break;
                    }
                }
                while let Ok(event) = events.try_recv() {
                    pass(event);
                }
                sink
            })?;
        Ok(Fanout { thread, stop })
    }

    /// Passes on what is queued and returns the observer; bounded even if a sender lives on.
    pub(super) fn finish(self) -> Result<S, FanoutPanicked> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().map_err(|_| FanoutPanicked)
    }
}
