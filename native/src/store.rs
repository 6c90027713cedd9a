//! fraudcore.state.InMemoryStore, compiled: the state a replay keeps, with the reference's
//! steps in the reference's order (its module docstring lists them), so a replay here
//! hands the features the same histories.

use std::cmp::Ordering;
use rustc_hash::FxHashMap as HashMap;

use crate::features::Spec;

/// An entry `(time, id, value)`; entries compare as the Python tuples do.
#[derive(Clone, Debug)]
struct Entry {
    time: f64,
    id: String,
    value: f64,
}

fn compare(a: (f64, &str, f64), b: (f64, &str, f64)) -> Ordering {
    a.0.partial_cmp(&b.0)
        .expect("finite times")
        .then_with(|| a.1.cmp(b.1)) // UTF-8 byte order is code point order, as Python's
        .then_with(|| a.2.partial_cmp(&b.2).unwrap_or(Ordering::Equal))
}

/// Sorts after every id of a time (Python's `_LAST_ID`, with an infinite value).
const LAST_ID: &str = "\u{10ffff}";

/// fraudcore.state.Timeline: entries in time order, unique by id, trimmed by age.
#[derive(Default, Debug)]
pub struct Timeline {
    entries: Vec<Entry>,
    ids: HashMap<String, (f64, f64, String)>,
}

impl Timeline {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, id: &str) -> Option<&(f64, f64, String)> {
        self.ids.get(id)
    }

    pub fn add(&mut self, time: f64, id: &str, value: f64, tag: &str) -> bool {
        if self.ids.contains_key(id) {
            return false;
        }
        self.ids.insert(id.to_owned(), (time, value, tag.to_owned()));
        let entry = Entry { time, id: id.to_owned(), value };
        let key = (time, id, value);
        match self.entries.last() {
            Some(last) if compare((last.time, &last.id, last.value), key) == Ordering::Greater => {
                // insort (right): after every entry that is not greater
                let at = self
                    .entries
                    .partition_point(|e| compare((e.time, &e.id, e.value), key) != Ordering::Greater);
                self.entries.insert(at, entry);
            }
            _ => self.entries.push(entry),
        }
        true
    }

    pub fn discard(&mut self, id: &str) -> bool {
        let Some((time, value, _)) = self.ids.remove(id) else {
            return false;
        };
        let key = (time, id, value);
        let at = self.entries.partition_point(|e| compare((e.time, &e.id, e.value), key) == Ordering::Less);
        self.entries.remove(at);
        true
    }

    /// How many entries sort at or before `(time, LAST_ID, inf)`.
    fn index(&self, time: f64) -> usize {
        let key = (time, LAST_ID, f64::INFINITY);
        self.entries
            .partition_point(|e| compare((e.time, &e.id, e.value), key) != Ordering::Greater)
    }

    pub fn trim(&mut self, before: f64) {
        let cut = self.index(before);
        self.drop_oldest(cut);
    }

    pub fn keep(&mut self, newest: usize) -> usize {
        let cut = self.entries.len().saturating_sub(newest);
        self.drop_oldest(cut);
        cut
    }

    fn drop_oldest(&mut self, cut: usize) {
        if cut > 0 {
            for e in self.entries.drain(..cut) {
                self.ids.remove(&e.id);
            }
        }
    }

    /// Entries after `low`, in time order, without the one whose id is `excluding`.
    pub fn since<'a>(&'a self, low: f64, excluding: &'a str) -> impl Iterator<Item = (f64, f64)> + 'a {
        self.entries[self.index(low)..]
            .iter()
            .filter(move |e| e.id != excluding)
            .map(|e| (e.time, e.value))
    }

    pub fn count(&self, low: f64, high: f64) -> i64 {
        (self.index(high) - self.index(low)) as i64
    }
}

/// What an exchange hands back: the histories before the transaction.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct Exchanged {
    pub card_times: Vec<f64>,
    pub card_amounts: Vec<f64>,
    pub counts: Vec<i64>,
    pub fraud_times: Vec<f64>,
    pub fraud_known_at: Vec<f64>,
}

/// fraudcore.state.InMemoryStore: card, terminal and label timelines by id.
pub struct Store {
    pub spec: Spec,
    cards: HashMap<String, Timeline>,
    terminals: HashMap<String, Timeline>,
    labels: HashMap<String, Timeline>,
    pub capped: [u64; 3], // card, terminal, label
}

/// The same id seen before with other content (fraudcore.errors.DuplicateConflict).
pub struct Conflict(pub String);

impl Store {
    pub fn new(spec: Spec) -> Store {
        Store {
            spec,
            cards: HashMap::default(),
            terminals: HashMap::default(),
            labels: HashMap::default(),
            capped: [0; 3],
        }
    }

    /// The histories before the transaction; then it is recorded (once).
    pub fn exchange(
        &mut self,
        id: &str,
        card_id: &str,
        terminal_id: &str,
        amount: f64,
        t: f64,
        into: &mut Exchanged,
    ) -> Result<(), Conflict> {
        let spec = &self.spec;
        let card_retention = spec.card_retention_seconds();
        let terminal_retention = spec.terminal_retention_seconds();
        if !self.cards.contains_key(card_id) {
            self.cards.insert(card_id.to_owned(), Timeline::default());
        }
        let card = self.cards.get_mut(card_id).expect("just inserted");
        if let Some((time, value, tag)) = card.get(id) {
            if !(*time == t && *value == amount && tag == terminal_id) {
                return Err(Conflict(format!(
                    "transaction '{id}' was seen before with another time, amount or terminal; \
                     the first one stands. Give a corrected transaction a new id."
                )));
            }
        }
        card.trim(t - card_retention);
        card.discard(id); // a duplicate: recorded again below, as it was
        self.capped[0] += card.keep(spec.card_max_entries - 1) as u64;
        into.card_times.clear();
        into.card_amounts.clear();
        // since(..., excluding=id) in the reference: the id was just discarded, so none is it
        for (time, value) in card.since(t - card_retention, "") {
            into.card_times.push(time);
            into.card_amounts.push(value);
        }
        card.add(t, id, amount, terminal_id);
        if !self.terminals.contains_key(terminal_id) {
            self.terminals.insert(terminal_id.to_owned(), Timeline::default());
        }
        let terminal = self.terminals.get_mut(terminal_id).expect("just inserted");
        terminal.add(t, id, 0.0, "");
        terminal.trim(t - terminal_retention);
        self.capped[1] += terminal.keep(spec.terminal_max_entries) as u64;
        into.counts.clear();
        for (low, high) in spec.terminal_windows(t) {
            into.counts.push(terminal.count(low, high));
        }
        into.fraud_times.clear();
        into.fraud_known_at.clear();
        if let Some(labels) = self.labels.get(terminal_id) {
            for (time, known) in labels.since(t - terminal_retention, "") {
                into.fraud_times.push(time);
                into.fraud_known_at.push(known);
            }
        }
        Ok(())
    }

    /// Record that the transaction was fraud, known at `known_at` (the first label wins).
    pub fn add_label(&mut self, id: &str, terminal_id: &str, t: f64, known_at: f64) {
        let labels = self.labels.entry(terminal_id.to_owned()).or_default();
        labels.add(t, id, known_at, "");
        self.capped[2] += labels.keep(self.spec.terminal_max_labels) as u64;
    }

    pub fn sizes(&self) -> (usize, usize, usize) {
        let total = |m: &HashMap<String, Timeline>| m.values().map(Timeline::len).sum();
        (total(&self.cards), total(&self.terminals), total(&self.labels))
    }
}
