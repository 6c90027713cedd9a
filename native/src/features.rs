//! fraudcore.features.compute, compiled: the 22 features of a transaction from its card's
//! and its terminal's history, in FEATURE_NAMES order. The Python function is the
//! reference; every operation here is the one it does, in its order (sums are exact,
//! `math.fsum`), so the vectors are equal bit for bit (tests/unit/test_native.py).

use crate::fsum::fsum;

pub const DAY: f64 = 86_400.0;

/// fraudcore.features.FeatureSpec: the parameters the features and the state read.
#[derive(Clone, Debug)]
pub struct Spec {
    pub card_windows_days: Vec<i64>,
    pub terminal_windows_days: Vec<i64>,
    pub label_delay_days: i64,
    pub short_window_seconds: i64,
    pub no_fraud_age_days: f64,
    pub grace_days: i64,
    pub card_max_entries: usize,
    pub terminal_max_entries: usize,
    pub terminal_max_labels: usize,
}

impl Spec {
    pub fn card_retention_seconds(&self) -> f64 {
        (*self.card_windows_days.iter().max().unwrap() + self.grace_days) as f64 * DAY
    }

    pub fn terminal_retention_seconds(&self) -> f64 {
        (self.label_delay_days + *self.terminal_windows_days.iter().max().unwrap() + self.grace_days)
            as f64
            * DAY
    }

    /// fraudcore.features.terminal_windows: the intervals (low, high] counted.
    pub fn terminal_windows(&self, t: f64) -> Vec<(f64, f64)> {
        let end = t - self.label_delay_days as f64 * DAY;
        self.terminal_windows_days.iter().map(|&w| (end - w as f64 * DAY, end)).collect()
    }

    pub fn feature_count(&self) -> usize {
        3 + 2 * self.card_windows_days.len() + 2 * self.terminal_windows_days.len() + 7
    }
}

/// The transaction as the features read it: its time, amount and its local calendar.
pub struct Event {
    pub epoch: f64,
    pub amount: f64,
    pub weekend: bool,
    pub night: bool,
}

/// The histories before it (fraudcore.features.CardHistory, TerminalHistory).
pub struct Histories<'a> {
    pub card_times: &'a [f64],
    pub card_amounts: &'a [f64],
    pub counts: &'a [i64],
    pub fraud_times: &'a [f64],
    pub fraud_known_at: &'a [f64],
}

/// bisect.bisect_right(values, x, lo, hi).
fn bisect_right(values: &[f64], x: f64, lo: usize, hi: usize) -> usize {
    lo + values[lo..hi].partition_point(|&v| v <= x)
}

fn median(values: &[f64]) -> f64 {
    let mut ordered = values.to_vec();
    ordered.sort_by(|a, b| a.partial_cmp(b).expect("finite amounts"));
    let mid = ordered.len() / 2;
    if ordered.len() % 2 == 1 {
        ordered[mid]
    } else {
        (ordered[mid - 1] + ordered[mid]) / 2.0
    }
}

/// The feature vector, appended to `out`; an error names what does not fit the spec.
pub fn compute(spec: &Spec, event: &Event, h: &Histories, out: &mut Vec<f64>) -> Result<(), String> {
    if h.card_times.len() != h.card_amounts.len() {
        return Err("card history: as many timestamps as amounts are needed".into());
    }
    if h.fraud_times.len() != h.fraud_known_at.len() {
        return Err("terminal history: as many fraud timestamps as known times are needed".into());
    }
    let t = event.epoch;
    let amount = event.amount;
    out.push(amount);
    out.push(if event.weekend { 1.0 } else { 0.0 });
    out.push(if event.night { 1.0 } else { 0.0 });

    // Card: windows over the ascending history, by bisection.
    let times = h.card_times;
    let now = bisect_right(times, t, 0, times.len());
    for &w in &spec.card_windows_days {
        let first = bisect_right(times, t - w as f64 * DAY, 0, now);
        let count = now - first;
        let total = fsum(h.card_amounts[first..now].iter().copied()) + amount;
        out.push((count + 1) as f64);
        out.push(total / (count + 1) as f64);
    }
    let longest_card = *spec.card_windows_days.iter().max().unwrap();
    let start = bisect_right(times, t - longest_card as f64 * DAY, 0, now);
    let previous = &h.card_amounts[start..now];
    let short_count = now - bisect_right(times, t - spec.short_window_seconds as f64, start, now);
    let since_last = if now > start { t - times[now - 1] } else { longest_card as f64 * DAY };

    // Terminal: transactions and known frauds in the delayed windows.
    let windows = spec.terminal_windows(t);
    if h.counts.len() != windows.len() {
        return Err(format!(
            "terminal history has {} counts, not {}",
            h.counts.len(),
            windows.len()
        ));
    }
    let mut fraud_counts = vec![0_i64; windows.len()];
    let oldest_low = windows.iter().map(|w| w.0).fold(f64::INFINITY, f64::min);
    let mut newest_fraud: Option<f64> = None;
    let mut oldest_fraud: Option<f64> = None;
    for (&ts, &known) in h.fraud_times.iter().zip(h.fraud_known_at) {
        if known > t || ts <= oldest_low || ts > t {
            continue;
        }
        newest_fraud = Some(newest_fraud.map_or(ts, |v| v.max(ts)));
        oldest_fraud = Some(oldest_fraud.map_or(ts, |v| v.min(ts)));
        for (i, &(low, high)) in windows.iter().enumerate() {
            if low < ts && ts <= high {
                fraud_counts[i] += 1;
            }
        }
    }
    for (&n_tx, &n_fraud) in h.counts.iter().zip(&fraud_counts) {
        out.push(n_tx as f64);
        out.push(if n_tx != 0 { n_fraud as f64 / n_tx as f64 } else { 0.0 });
    }

    // Additions: the card's short-term pace and the amount against its own history.
    let n = previous.len();
    let ratio = if n > 0 { amount / median(previous).max(0.01) } else { 1.0 };
    let zscore = if n >= 2 {
        let mean = fsum(previous.iter().copied()) / n as f64;
        let std = (fsum(previous.iter().map(|&x| (x - mean) * (x - mean))) / n as f64).sqrt();
        (amount - mean) / std.max(1.0)
    } else {
        0.0
    };
    let longest_terminal = *spec.terminal_windows_days.iter().max().unwrap();
    let longest_at = spec.terminal_windows_days.iter().position(|&w| w == longest_terminal).unwrap();
    let no_fraud = spec.no_fraud_age_days;
    out.push((short_count + 1) as f64);
    out.push(since_last);
    out.push(ratio);
    out.push(zscore);
    out.push(fraud_counts[longest_at] as f64);
    out.push(newest_fraud.map_or(no_fraud, |ts| (t - ts) / DAY));
    out.push(oldest_fraud.map_or(no_fraud, |ts| (t - ts) / DAY));
    Ok(())
}
