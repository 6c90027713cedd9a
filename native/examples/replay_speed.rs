// cargo run --release --example replay_speed: the store and the features alone, no Python.
use std::time::Instant;

fn main() {
    let spec = fraudcore_native::bench_spec();
    let mut store = fraudcore_native::bench_store(spec.clone());
    let n = 200_000;
    let mut out = Vec::new();
    let mut x = fraudcore_native::bench_exchanged();
    let start = Instant::now();
    let mut e = 0.0;
    let mut c = 0.0;
    for i in 0..n {
        let t0 = Instant::now();
        let id = format!("t{i}");
        let card = format!("c{}", i % 2000);
        let term = format!("T{}", (i * 7) % 4000);
        let t = 1.5e9 + i as f64 * 25.0;
        fraudcore_native::bench_exchange(&mut store, &id, &card, &term, 12.0 + (i % 13) as f64, t, &mut x);
        let t1 = Instant::now();
        out.clear();
        fraudcore_native::bench_compute(&spec, t, 12.0, &x, &mut out);
        e += (t1 - t0).as_secs_f64();
        c += t1.elapsed().as_secs_f64();
    }
    let total = start.elapsed().as_secs_f64();
    println!("{n} exchanges: {:.2} µs a transaction ({:.2} exchange, {:.2} features); card history {}",
             total / n as f64 * 1e6, e / n as f64 * 1e6, c / n as f64 * 1e6, x.card_times.len());
}
