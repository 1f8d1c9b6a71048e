//! DNS messages: every entry point the engine and the pcap observer use.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phonehome::dissect::dns;
use phonehome::flow::Proto;

fuzz_target!(|data: &[u8]| {
    let parsed = dns::parse(data);
    let lenient = dns::parse_lenient(data);
    if let Ok(m) = &parsed {
        // A strict parse must also succeed leniently, with the same question.
        assert_eq!(lenient.as_ref().ok().and_then(|l| l.query_name()), m.query_name());
        let _ = m.answer_addresses();
        for rr in &m.answers {
            let _ = rr.data_text();
        }
    }
    let ex = dns::Exchange {
        time: 0,
        client: "10.0.0.2:5353".parse().unwrap(),
        server: "198.18.0.53:53".parse().unwrap(),
        transport: Proto::Udp,
    };
    let _ = dns::record_from(ex, parsed.as_ref().ok(), lenient.as_ref().ok());
    let (msgs, used) = dns::split_tcp(data);
    assert!(used <= data.len());
    for m in msgs {
        let _ = dns::parse(m);
    }
    let _ = dns::parse_tcp(data);
});
