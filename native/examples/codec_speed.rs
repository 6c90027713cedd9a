// cargo run --release --example codec_speed: a transaction's commands packed, and its
// payload decoded, no Python.
use fraudcore_native::redis::{Layout, Tx};
use std::time::Instant;

fn main() {
    let layout = Layout {
        root: "fraud:v3".into(),
        card_sha: "a".repeat(40),
        terminal_sha: "b".repeat(40),
        card_ttl: "2851200000".into(),
        terminal_ttl: "3456000000".into(),
        card_max: "500".into(),
        terminal_max: "100000".into(),
        card_retention: 2_851_200.0,
        terminal_retention: 3_456_000.0,
        delay: 604_800.0,
        windows: vec![86_400.0, 604_800.0, 2_592_000.0],
    };
    let n = 200_000;
    let tag = "0123456789abcdef0123456789abcdef";
    let start = Instant::now();
    let mut bytes = 0;
    for i in 0..n {
        let id = format!("tx-{i}");
        let tx = Tx { id: &id, card_tag: tag, terminal_id: "4242", epoch: 1.7e9 + i as f64 * 0.37, amount: 12.5 };
        let calls = layout.calls(&tx, 1.7e9, true);
        bytes += calls.card.0.len() + calls.terminal.0.len() + calls.id.map_or(0, |c| c.0.len());
    }
    println!("{n} transactions' commands: {:.2} µs a transaction ({} bytes each)",
             start.elapsed().as_secs_f64() / n as f64 * 1e6, bytes / n);
    let payload = br#"{"transaction_id":"tx-123456","card_id":"4000123412341234","terminal_id":"4242","amount":12.5,"timestamp":"2026-04-01T08:30:00.250+00:00","currency":"EUR","mcc":"5411","country":"FR","channel":"online"}"#;
    let start = Instant::now();
    let mut ok = 0;
    for _ in 0..n {
        ok += fraudcore_native::decode::transaction(payload).is_some() as usize;
    }
    println!("{n} payloads decoded: {:.2} µs each ({ok} on the fast path)", start.elapsed().as_secs_f64() / n as f64 * 1e6);
}
