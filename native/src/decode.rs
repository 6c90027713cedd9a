//! A transaction's bytes to its validated fields: the fast path of
//! service.records.decode_transaction for the payloads producers send.
//!
//! It accepts only what fraudcore.parse_transaction accepts, with the same values; a
//! payload it is not sure of (another shape, an extra field, a non-ASCII id, a timestamp
//! in another ISO 8601 form, anything invalid) gets `None`, and the pure-Python reference
//! decides, with its own error message. tests/unit/test_native.py holds the two equal.

use serde_json::{Map, Value};

/// The limits of fraudcore.events.LIMITS.
const MAX_ID_LENGTH: usize = 128;
const MAX_AMOUNT: f64 = 1_000_000.0;
const MIN_YEAR: u32 = 2000;
const MAX_YEAR: u32 = 2100;
const CHANNELS: [&str; 4] = ["card_present", "online", "moto", "atm"];
const KNOWN: [&str; 9] = [
    "transaction_id", "card_id", "terminal_id", "amount", "timestamp", "currency", "mcc", "country", "channel",
];

/// The timestamp as `datetime(...)` takes it; `offset`: seconds east of UTC.
#[derive(Debug, PartialEq)]
pub struct Instant {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micro: u32,
    pub offset: i32,
}

#[derive(Debug, PartialEq)]
pub struct Fields {
    pub transaction_id: String,
    pub card_id: String,
    pub terminal_id: String,
    pub amount: f64,
    pub timestamp: Instant,
    pub currency: Option<String>,
    pub mcc: Option<String>,
    pub country: Option<String>,
    pub channel: Option<&'static str>,
}

pub fn transaction(payload: &[u8]) -> Option<Fields> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    let obj = value.as_object()?;
    if !obj.keys().all(|k| KNOWN.contains(&k.as_str())) {
        return None; // extra fields: the reference keeps them
    }
    Some(Fields {
        transaction_id: identifier(obj.get("transaction_id")?)?,
        card_id: identifier(obj.get("card_id")?)?,
        terminal_id: identifier(obj.get("terminal_id")?)?,
        amount: amount(obj.get("amount")?)?,
        timestamp: timestamp(obj.get("timestamp")?.as_str()?)?,
        currency: code(obj, "currency", 3)?,
        mcc: mcc(obj)?,
        country: code(obj, "country", 2)?,
        channel: channel(obj)?,
    })
}

/// A string of printable ASCII, 1 to 128 long, not only spaces; or an integer.
fn identifier(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => return None,
    };
    let printable = text.bytes().all(|b| (0x20..0x7f).contains(&b));
    let blank = text.bytes().all(|b| b == b' ');
    (printable && !blank && !text.is_empty() && text.len() <= MAX_ID_LENGTH).then_some(text)
}

fn amount(value: &Value) -> Option<f64> {
    let n = value.as_number()?;
    let amount = if let Some(i) = n.as_i64() {
        i as f64 // Python's float(int): nearest, ties to even, as Rust's `as`
    } else if let Some(u) = n.as_u64() {
        u as f64
    } else {
        n.as_f64()?
    };
    // serde reads both -0 and -0.0 as -0.0, orjson the first as the integer 0 (0.0 after
    // float()): a negative zero goes to the reference.
    let negative_zero = amount == 0.0 && amount.is_sign_negative();
    (amount.is_finite() && !negative_zero && (0.0..=MAX_AMOUNT).contains(&amount)).then_some(amount)
}

/// An optional field: `Some(None)` when missing or null, `None` when not on the fast path.
fn optional<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<Option<&'a Value>> {
    match obj.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(v) => Some(Some(v)),
    }
}

fn code(obj: &Map<String, Value>, name: &str, length: usize) -> Option<Option<String>> {
    let Some(value) = optional(obj, name)? else { return Some(None) };
    let s = value.as_str()?;
    (s.len() == length && s.bytes().all(|b| b.is_ascii_alphabetic())).then(|| Some(s.to_ascii_uppercase()))
}

fn mcc(obj: &Map<String, Value>) -> Option<Option<String>> {
    let Some(value) = optional(obj, "mcc")? else { return Some(None) };
    match value {
        Value::Number(n) => n.as_u64().filter(|&m| m <= 9999).map(|m| Some(format!("{m:04}"))),
        Value::String(s) if s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()) => Some(Some(s.clone())),
        _ => None,
    }
}

fn channel(obj: &Map<String, Value>) -> Option<Option<&'static str>> {
    let Some(value) = optional(obj, "channel")? else { return Some(None) };
    let s = value.as_str()?;
    CHANNELS.iter().find(|c| **c == s).map(|c| Some(*c))
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+HH:MM|-HH:MM)`, year 2000 to 2100. Whether the date
/// exists (February 30th) is left to `datetime(...)`: the caller falls back when it refuses.
pub fn timestamp(s: &str) -> Option<Instant> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut i = 19;
    let mut micro = 0;
    if at(i, b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=6).contains(&digits) {
            return None;
        }
        micro = num(i + 1, digits)? * 10u32.pow(6 - digits as u32);
        i += 1 + digits;
    }
    let offset = match b.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let east = (h * 3600 + m * 60) as i32;
            if *sign == b'-' { -east } else { east }
        }
        _ => return None,
    };
    if !(MIN_YEAR..=MAX_YEAR).contains(&year) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(Instant { year, month, day, hour, minute, second, micro, offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producers_payload() {
        let f = transaction(
            br#"{"transaction_id":"tx-1","card_id":42,"terminal_id":"T 1","amount":12,
                "timestamp":"2026-04-01T08:30:00.25+02:00","mcc":5411,"channel":"online","currency":"eur"}"#,
        )
        .unwrap();
        assert_eq!(f.card_id, "42");
        assert_eq!(f.amount, 12.0);
        assert_eq!(f.timestamp, Instant { year: 2026, month: 4, day: 1, hour: 8, minute: 30, second: 0, micro: 250_000, offset: 7200 });
        assert_eq!((f.mcc.as_deref(), f.channel, f.currency.as_deref(), f.country), (Some("5411"), Some("online"), Some("EUR"), None));
    }

    #[test]
    fn unsure_payloads_go_to_the_reference() {
        for p in [
            &br#"{"transaction_id":"a","card_id":"b","terminal_id":"c","amount":1,"timestamp":"2026-04-01T08:30:00Z","x":1}"#[..],
            br#"{"transaction_id":"a","card_id":"b","terminal_id":"c","amount":-1,"timestamp":"2026-04-01T08:30:00Z"}"#,
            br#"{"transaction_id":"  ","card_id":"b","terminal_id":"c","amount":1,"timestamp":"2026-04-01T08:30:00Z"}"#,
            br#"{"transaction_id":"a","card_id":"b","terminal_id":"c","amount":1,"timestamp":"2026-04-01 08:30:00Z"}"#,
            br#"{"transaction_id":"a","card_id":"b","terminal_id":"c","amount":1,"timestamp":"2026-04-01T08:30:00"}"#,
            br#"{"transaction_id":"a","card_id":"b","terminal_id":"c","amount":true,"timestamp":"2026-04-01T08:30:00Z"}"#,
            br#"[1]"#,
        ] {
            assert_eq!(transaction(p), None, "{}", String::from_utf8_lossy(p));
        }
    }
}
