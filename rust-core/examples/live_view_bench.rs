//! What the app's 1 s poll costs: `LiveView::apply` per engine event and `snapshot()` (plus its
//! prost encoding, the bytes that cross JNI) with the live view full (20 000 closed flows plus
//! open ones) over 300 apps. Run: `cargo run --release --example live_view_bench --features proto`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use phonehome::android::live::{EngineCounters, LiveView, MAX_FLOWS};
use phonehome::flow::{CloseReason, Event, FlowKey, FlowRecord, NameSource, Proto};
use prost::Message;

fn main() {
    let apps = 300u32;
    let open = 2_000u64;
    let total = MAX_FLOWS as u64 + open + 30_000; // the cap is hit and older flows retire
    let mut view = LiveView::new(1, 0, Arc::new(Mutex::new(HashMap::new())));
    let mut events = Vec::with_capacity(total as usize);
    for id in 0..total {
        let key = FlowKey {
            proto: Proto::Tcp,
            src: format!("10.215.173.1:{}", 10_000 + id % 50_000)
                .parse()
                .unwrap(),
            dst: format!("198.18.{}.{}:443", (id / 250) % 250, id % 250)
                .parse()
                .unwrap(),
        };
        let mut f = FlowRecord::new(id, key, id as i64);
        f.uid = Some(10_000 + (id as u32 % apps));
        f.offer_name(
            &format!("host{}.example{}.com", id % 700, id % 3),
            NameSource::Sni,
        );
        if id % 4 == 0 {
            f.destination.vendor = Some("Xiaomi".into());
            f.destination.category = Some("analytics/telemetry".into());
        }
        f.bytes_up = 500;
        f.bytes_down = 5_000;
        if id < total - open {
            f.close_reason = Some(CloseReason::Fin);
            events.push(Event::FlowClosed(f));
        } else {
            events.push(Event::Flow(f));
        }
    }
    let start = Instant::now();
    for e in &events {
        view.apply(e);
    }
    let apply = start.elapsed();
    println!(
        "apply: {} events in {:.1} ms ({:.0} ns/event)",
        events.len(),
        apply.as_secs_f64() * 1e3,
        apply.as_nanos() as f64 / events.len() as f64
    );

    let runs = 20;
    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..runs {
        let snapshot = view.snapshot(true, &EngineCounters::default(), "");
        bytes = snapshot.encode_to_vec().len();
    }
    let per = start.elapsed() / runs;
    println!(
        "snapshot + encode: {:.2} ms with {} flows held ({} open) over {apps} apps; {bytes} bytes to Kotlin",
        per.as_secs_f64() * 1e3,
        MAX_FLOWS as u64 + open,
        open
    );
}
