//! fraudcore_native: the per-transaction hot path of fraud-stream, compiled.
//!
//! `Engine.compute` is fraudcore.features.compute (the worker calls it once a transaction,
//! on the histories Redis gave); `State` is fraudcore.state.InMemoryStore's exchange and
//! labels, and `State.replay` is training's replay loop over both, in one call per chunk
//! of transactions. The Python package fraudnative wraps them with fraudcore's types; the
//! pure-Python fraudcore stays the reference, and tests/unit/test_native.py holds the two
//! equal on every feature and state transition.

pub mod decode;
mod features;
mod fsum;
pub mod redis;
mod store;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::buffer::PyBuffer;
use pyo3::types::PyBytes;

pub use features::{compute, Event, Histories, Spec};
pub use store::{Exchanged, Store};

create_exception!(fraudcore_native, Conflict, PyException, "The same id seen before with other content.");

/// The feature definitions' parameters (fraudcore.features.FeatureSpec).
#[pyclass(module = "fraudcore_native", frozen)]
struct Engine {
    spec: Spec,
}

type HistoryLists = (Vec<f64>, Vec<f64>, Vec<i64>, Vec<f64>, Vec<f64>);

#[pymethods]
impl Engine {
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        card_windows_days: Vec<i64>,
        terminal_windows_days: Vec<i64>,
        label_delay_days: i64,
        short_window_seconds: i64,
        no_fraud_age_days: f64,
        grace_days: i64,
        card_max_entries: usize,
        terminal_max_entries: usize,
        terminal_max_labels: usize,
    ) -> PyResult<Self> {
        if card_windows_days.is_empty() || terminal_windows_days.is_empty() || card_max_entries == 0 {
            return Err(PyValueError::new_err("a spec needs windows and a card bound of at least 1"));
        }
        Ok(Engine {
            spec: Spec {
                card_windows_days,
                terminal_windows_days,
                label_delay_days,
                short_window_seconds,
                no_fraud_age_days,
                grace_days,
                card_max_entries,
                terminal_max_entries,
                terminal_max_labels,
            },
        })
    }

    /// The feature vector of a transaction (its epoch, amount, weekend and night in its
    /// own offset) from its histories, in FEATURE_NAMES order.
    #[allow(clippy::too_many_arguments)]
    fn compute(
        &self,
        epoch: f64,
        amount: f64,
        weekend: bool,
        night: bool,
        card_times: &Bound<'_, PyAny>,
        card_amounts: &Bound<'_, PyAny>,
        counts: Vec<i64>,
        fraud_times: Vec<f64>,
        fraud_known_at: Vec<f64>,
    ) -> PyResult<Vec<f64>> {
        let (card_times, card_amounts) = (doubles(card_times)?, doubles(card_amounts)?);
        let mut out = Vec::with_capacity(self.spec.feature_count());
        let histories = Histories {
            card_times: &card_times,
            card_amounts: &card_amounts,
            counts: &counts,
            fraud_times: &fraud_times,
            fraud_known_at: &fraud_known_at,
        };
        compute(&self.spec, &Event { epoch, amount, weekend, night }, &histories, &mut out)
            .map_err(PyValueError::new_err)?;
        Ok(out)
    }
}

/// A sequence of floats: an ``array('d')`` (or any buffer of doubles) copied at once, else
/// read item by item.
fn doubles(values: &Bound<'_, PyAny>) -> PyResult<Vec<f64>> {
    match PyBuffer::<f64>::get(values) {
        Ok(buffer) => buffer.to_vec(values.py()),
        Err(_) => values.extract(),
    }
}

/// fraudcore.state.InMemoryStore's state, and the replay over it.
#[pyclass(module = "fraudcore_native")]
struct State {
    store: Store,
    scratch: Exchanged,
    labels: Vec<(String, String, f64, f64)>, // id, terminal, time, known at: by known time
    applied: usize,
}

#[pymethods]
impl State {
    #[new]
    fn new(engine: &Engine) -> Self {
        State {
            store: Store::new(engine.spec.clone()),
            scratch: Exchanged::default(),
            labels: Vec::new(),
            applied: 0,
        }
    }

    /// The histories before the transaction (card times, card amounts, terminal counts,
    /// fraud times, fraud known-at); then it is recorded. Conflict: the id was seen with
    /// other content.
    fn exchange(&mut self, id: &str, card_id: &str, terminal_id: &str, amount: f64, epoch: f64) -> PyResult<HistoryLists> {
        self.store
            .exchange(id, card_id, terminal_id, amount, epoch, &mut self.scratch)
            .map_err(|c| Conflict::new_err(c.0))?;
        let s = &self.scratch;
        Ok((s.card_times.clone(), s.card_amounts.clone(), s.counts.clone(), s.fraud_times.clone(), s.fraud_known_at.clone()))
    }

    fn add_label(&mut self, id: &str, terminal_id: &str, epoch: f64, known_at: f64) {
        self.store.add_label(id, terminal_id, epoch, known_at);
    }

    /// The replay's label events, in the order they become known.
    fn set_labels(&mut self, ids: Vec<String>, terminals: Vec<String>, epochs: Vec<f64>, known_at: Vec<f64>) -> PyResult<()> {
        let n = ids.len();
        if terminals.len() != n || epochs.len() != n || known_at.len() != n {
            return Err(PyValueError::new_err("labels: every column must have the same length"));
        }
        self.labels = ids
            .into_iter()
            .zip(terminals)
            .zip(epochs.into_iter().zip(known_at))
            .map(|((i, t), (e, k))| (i, t, e, k))
            .collect();
        self.applied = 0;
        Ok(())
    }

    /// Labels applied so far by `replay`.
    #[getter]
    fn applied(&self) -> usize {
        self.applied
    }

    /// Entries dropped by the size bounds so far: (card, terminal, label).
    #[getter]
    fn capped(&self) -> (u64, u64, u64) {
        (self.store.capped[0], self.store.capped[1], self.store.capped[2])
    }

    /// Training's replay over a chunk of transactions in time order: before each, the
    /// labels known by its time (``known_before``: how many of the set labels) are
    /// applied; then its features are computed from the exchange. Returns the feature
    /// rows as little-endian float64 bytes (rows of FEATURE_NAMES).
    #[allow(clippy::too_many_arguments)]
    fn replay<'py>(
        &mut self,
        py: Python<'py>,
        engine: &Engine,
        ids: Vec<String>,
        cards: Vec<String>,
        terminals: Vec<String>,
        amounts: Vec<f64>,
        epochs: Vec<f64>,
        weekend: Vec<bool>,
        night: Vec<bool>,
        known_before: Vec<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let n = ids.len();
        for len in [cards.len(), terminals.len(), amounts.len(), epochs.len(), weekend.len(), night.len(), known_before.len()] {
            if len != n {
                return Err(PyValueError::new_err("replay: every column must have the same length"));
            }
        }
        let width = engine.spec.feature_count();
        let mut row = Vec::with_capacity(width);
        let mut bytes = Vec::with_capacity(n * width * 8);
        for i in 0..n {
            let known = known_before[i].min(self.labels.len());
            while self.applied < known {
                let (id, terminal, epoch, at) = &self.labels[self.applied];
                self.store.add_label(id, terminal, *epoch, *at);
                self.applied += 1;
            }
            self.store
                .exchange(&ids[i], &cards[i], &terminals[i], amounts[i], epochs[i], &mut self.scratch)
                .map_err(|c| Conflict::new_err(c.0))?;
            let s = &self.scratch;
            let histories = Histories {
                card_times: &s.card_times,
                card_amounts: &s.card_amounts,
                counts: &s.counts,
                fraud_times: &s.fraud_times,
                fraud_known_at: &s.fraud_known_at,
            };
            row.clear();
            let event = Event { epoch: epochs[i], amount: amounts[i], weekend: weekend[i], night: night[i] };
            compute(&engine.spec, &event, &histories, &mut row).map_err(PyValueError::new_err)?;
            for v in &row {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        Ok(PyBytes::new(py, &bytes))
    }

    /// Entries held: (card, terminal, label).
    fn sizes(&self) -> (usize, usize, usize) {
        self.store.sizes()
    }
}

/// The Redis store's commands for one key layout and feature spec
/// (service.exchange.PythonCalls, compiled).
#[pyclass(module = "fraudcore_native", frozen)]
struct Commands {
    layout: redis::Layout,
}

type Packed<'py> = (Bound<'py, PyBytes>, String);

#[pymethods]
impl Commands {
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        root: String,
        card_sha: String,
        terminal_sha: String,
        card_retention_seconds: f64,
        terminal_retention_seconds: f64,
        label_delay_seconds: f64,
        terminal_windows_seconds: Vec<f64>,
        card_max_entries: usize,
        terminal_max_entries: usize,
    ) -> Self {
        Commands {
            layout: redis::Layout {
                root,
                card_sha,
                terminal_sha,
                card_ttl: ((card_retention_seconds * 1000.0) as i64).to_string(),
                terminal_ttl: ((terminal_retention_seconds * 1000.0) as i64).to_string(),
                card_max: card_max_entries.to_string(),
                terminal_max: terminal_max_entries.to_string(),
                card_retention: card_retention_seconds,
                terminal_retention: terminal_retention_seconds,
                delay: label_delay_seconds,
                windows: terminal_windows_seconds,
            },
        }
    }

    /// A transaction's calls, each packed with its first key: the id index's ``SET``
    /// (None without the index), the card script's and the terminal script's.
    #[allow(clippy::too_many_arguments)]
    fn exchange<'py>(
        &self,
        py: Python<'py>,
        transaction_id: &str,
        card_tag: &str,
        terminal_id: &str,
        epoch: f64,
        amount: f64,
        now: f64,
        ids: bool,
    ) -> (Option<Packed<'py>>, Packed<'py>, Packed<'py>) {
        let tx = redis::Tx { id: transaction_id, card_tag, terminal_id, epoch, amount };
        let calls = self.layout.calls(&tx, now, ids);
        let bytes = |(packed, key): (Vec<u8>, String)| (PyBytes::new(py, &packed), key);
        (calls.id.map(bytes), bytes(calls.card), bytes(calls.terminal))
    }
}

/// A card's history from the card script's reply: (times, amounts), in time order, as
/// native-endian doubles (for ``array('d').frombytes``).
#[pyfunction]
fn card_history<'py>(py: Python<'py>, joined: &[u8]) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let (times, amounts) = redis::card_history(joined).map_err(PyValueError::new_err)?;
    let bytes = |v: Vec<f64>| PyBytes::new(py, &v.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>());
    Ok((bytes(times), bytes(amounts)))
}

/// The decoder's fast path making ``fraudcore.Transaction`` objects itself: its slots set
/// directly (a frozen dataclass's ``__init__`` costs ~4 µs, most of a decode), ``epoch`` as
/// ``datetime.timestamp()`` computes it (microseconds since 1970, divided by 10^6,
/// correctly rounded). fraudnative checks the class's slots are the ones set here.
#[pyclass(module = "fraudcore_native", frozen)]
struct Decoder {
    cls: Py<PyAny>,      // fraudcore.Transaction
    new: Py<PyAny>,      // object.__new__
    datetime: Py<PyAny>, // datetime.datetime
    zone: Py<PyAny>,     // seconds east of UTC -> the tzinfo fromisoformat gives
}

/// ``datetime.timestamp()`` of a valid aware instant.
fn epoch(t: &decode::Instant) -> f64 {
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let (y, m, d) = (i64::from(t.year) - i64::from(t.month <= 2), i64::from(t.month), i64::from(t.day));
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + i64::from(t.hour * 3600 + t.minute * 60 + t.second) - i64::from(t.offset);
    (seconds * 1_000_000 + i64::from(t.micro)) as f64 / 1e6
}

fn set_slot(obj: &Bound<'_, PyAny>, name: &Bound<'_, pyo3::types::PyString>, value: &Bound<'_, PyAny>) -> PyResult<()> {
    // SAFETY: three live objects; the generic setter bypasses the frozen class's __setattr__
    // as object.__setattr__ does.
    let status = unsafe { pyo3::ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value.as_ptr()) };
    if status < 0 {
        return Err(PyErr::fetch(obj.py()));
    }
    Ok(())
}

#[pymethods]
impl Decoder {
    #[new]
    fn new(cls: Py<PyAny>, new: Py<PyAny>, datetime: Py<PyAny>, zone: Py<PyAny>) -> Self {
        Decoder { cls, new, datetime, zone }
    }

    /// The transaction of a payload the fast path is sure of; None: the reference decides.
    fn decode<'py>(&self, py: Python<'py>, payload: &[u8]) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(f) = decode::transaction(payload) else { return Ok(None) };
        let t = &f.timestamp;
        let zone = self.zone.bind(py).call1((t.offset,))?;
        let when = match self.datetime.bind(py).call1((t.year, t.month, t.day, t.hour, t.minute, t.second, t.micro, zone)) {
            Ok(when) => when,
            Err(e) if e.is_instance_of::<PyValueError>(py) => return Ok(None), // no such date
            Err(e) => return Err(e),
        };
        let tx = self.new.bind(py).call1((self.cls.bind(py),))?;
        let optional = |v: Option<String>| v.into_pyobject(py).map(|o| o.into_any());
        set_slot(&tx, pyo3::intern!(py, "transaction_id"), &f.transaction_id.into_pyobject(py)?.into_any())?;
        set_slot(&tx, pyo3::intern!(py, "card_id"), &f.card_id.into_pyobject(py)?.into_any())?;
        set_slot(&tx, pyo3::intern!(py, "terminal_id"), &f.terminal_id.into_pyobject(py)?.into_any())?;
        set_slot(&tx, pyo3::intern!(py, "amount"), &f.amount.into_pyobject(py)?.into_any())?;
        set_slot(&tx, pyo3::intern!(py, "timestamp"), &when)?;
        set_slot(&tx, pyo3::intern!(py, "extra"), &pyo3::types::PyDict::new(py).into_any())?;
        set_slot(&tx, pyo3::intern!(py, "currency"), &optional(f.currency)?)?;
        set_slot(&tx, pyo3::intern!(py, "mcc"), &optional(f.mcc)?)?;
        set_slot(&tx, pyo3::intern!(py, "country"), &optional(f.country)?)?;
        set_slot(&tx, pyo3::intern!(py, "channel"), &optional(f.channel.map(str::to_owned))?)?;
        set_slot(&tx, pyo3::intern!(py, "epoch"), &epoch(t).into_pyobject(py)?.into_any())?;
        Ok(Some(tx))
    }
}

/// Kafka's murmur2 of a record key (org.apache.kafka.common.utils.Utils.murmur2, as
/// aiokafka.partitioner.murmur2 computes it in Python at ~5 µs a key): the partition of a
/// keyed record is ``(murmur2(key) & 0x7fffffff) % partitions``.
#[pyfunction]
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// Python's repr of a float, as the commands write it (for the tests).
#[pyfunction]
fn float_repr(x: f64) -> String {
    let mut s = String::new();
    redis::py_repr(x, &mut s);
    s
}

/// The terminal's hash tag (service.keys.terminal_tag; for the tests).
#[pyfunction]
fn terminal_tag(terminal_id: &str) -> String {
    redis::terminal_tag(terminal_id)
}

#[pymodule]
fn fraudcore_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_class::<State>()?;
    m.add_class::<Commands>()?;
    m.add_class::<Decoder>()?;
    m.add_function(wrap_pyfunction!(card_history, m)?)?;
    m.add_function(wrap_pyfunction!(murmur2, m)?)?;
    m.add_function(wrap_pyfunction!(float_repr, m)?)?;
    m.add_function(wrap_pyfunction!(terminal_tag, m)?)?;
    m.add("Conflict", m.py().get_type::<Conflict>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

// For examples/replay_speed.rs (not part of the Python module).
#[doc(hidden)]
pub fn bench_spec() -> Spec {
    Spec {
        card_windows_days: vec![1, 7, 30],
        terminal_windows_days: vec![1, 7, 30],
        label_delay_days: 7,
        short_window_seconds: 3600,
        no_fraud_age_days: 60.0,
        grace_days: 3,
        card_max_entries: 500,
        terminal_max_entries: 100_000,
        terminal_max_labels: 250,
    }
}
#[doc(hidden)]
pub fn bench_store(spec: Spec) -> Store {
    Store::new(spec)
}
#[doc(hidden)]
pub fn bench_exchanged() -> Exchanged {
    Exchanged::default()
}
#[doc(hidden)]
pub fn bench_exchange(s: &mut Store, id: &str, card: &str, term: &str, amount: f64, t: f64, x: &mut Exchanged) {
    let _ = s.exchange(id, card, term, amount, t, x);
}
#[doc(hidden)]
pub fn bench_compute(spec: &Spec, t: f64, amount: f64, x: &Exchanged, out: &mut Vec<f64>) {
    let h = Histories {
        card_times: &x.card_times,
        card_amounts: &x.card_amounts,
        counts: &x.counts,
        fraud_times: &x.fraud_times,
        fraud_known_at: &x.fraud_known_at,
    };
    let _ = compute(spec, &Event { epoch: t, amount, weekend: false, night: false }, &h, out);
}
