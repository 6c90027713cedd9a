//! The Redis store's side of the hot path: a transaction's three commands packed in
//! Redis' protocol (service.exchange.PythonCalls is the reference, byte for byte), and a
//! card's history read from the card script's reply (service.replies.card_history).

use std::fmt::Write;

/// What the commands of one key layout and feature spec share.
pub struct Layout {
    pub root: String, // "{prefix}:v{spec version}"
    pub card_sha: String,
    pub terminal_sha: String,
    pub card_ttl: String, // milliseconds
    pub terminal_ttl: String,
    pub card_max: String,
    pub terminal_max: String,
    pub card_retention: f64, // seconds
    pub terminal_retention: f64,
    pub delay: f64,        // the label delay, seconds
    pub windows: Vec<f64>, // the terminal windows, seconds
}

/// A transaction's calls: packed, and the first key of each (a cluster routes by it).
pub struct Calls {
    pub id: Option<(Vec<u8>, String)>,
    pub card: (Vec<u8>, String),
    pub terminal: (Vec<u8>, String),
}

pub struct Tx<'a> {
    pub id: &'a str,
    pub card_tag: &'a str, // the card's keyed hash (service.keys.KeyLayout.card_tag)
    pub terminal_id: &'a str,
    pub epoch: f64,
    pub amount: f64,
}

/// A command in Redis' protocol, as hiredis.pack_command packs it, written straight into
/// one buffer: ``*<args>`` then each argument as ``$<len>`` and its bytes (an argument may
/// be given in parts, as a key is: root, kind, tag, suffix).
struct Packer {
    out: Vec<u8>,
    args: u64,
}

impl Packer {
    fn new() -> Self {
        Packer { out: Vec::with_capacity(640), args: 0 }
    }
    fn parts(&mut self, parts: &[&[u8]]) -> &mut Self {
        self.args += 1;
        self.out.push(b'$');
        decimal(&mut self.out, parts.iter().map(|p| p.len()).sum::<usize>() as u64);
        self.out.extend_from_slice(b"\r\n");
        for part in parts {
            self.out.extend_from_slice(part);
        }
        self.out.extend_from_slice(b"\r\n");
        self
    }
    fn arg(&mut self, value: &[u8]) -> &mut Self {
        self.parts(&[value])
    }
    fn text(&mut self, value: &str) -> &mut Self {
        self.arg(value.as_bytes())
    }
    fn float(&mut self, value: f64) -> &mut Self {
        let mut s = String::with_capacity(24);
        py_repr(value, &mut s);
        self.arg(s.as_bytes())
    }
    fn finish(&mut self) -> Vec<u8> {
        let mut command = Vec::with_capacity(self.out.len() + 8);
        command.push(b'*');
        decimal(&mut command, self.args);
        command.extend_from_slice(b"\r\n");
        command.extend_from_slice(&self.out);
        command
    }
}

/// ``n`` in decimal, without the formatting machinery.
fn decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The terminal's hash tag (service.keys.terminal_tag): ``%``, ``{`` and ``}``
/// percent-encoded.
pub fn terminal_tag(terminal_id: &str) -> String {
    let mut tag = String::with_capacity(terminal_id.len() + 4);
    for c in terminal_id.chars() {
        match c {
            '%' => tag.push_str("%25"),
            '{' => tag.push_str("%7B"),
            '}' => tag.push_str("%7D"),
            _ => tag.push(c),
        }
    }
    tag
}

/// ``struct.pack("<3d", epoch, amount, zlib.crc32(terminal_id))``: what a card keeps of
/// a transaction (service.replies.stored).
fn stored(tx: &Tx) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&tx.epoch.to_le_bytes());
    out[8..16].copy_from_slice(&tx.amount.to_le_bytes());
    out[16..].copy_from_slice(&(crc32fast::hash(tx.terminal_id.as_bytes()) as f64).to_le_bytes());
    out
}

impl Layout {
    pub fn calls(&self, tx: &Tx, now: f64, ids: bool) -> Calls {
        let t = tx.epoch;
        let root = self.root.as_bytes();
        let key = |parts: &[&[u8]]| String::from_utf8(parts.concat()).expect("parts of UTF-8 strings");
        let id = ids.then(|| {
            let tag = [root, b":id:{", tx.id.as_bytes(), b"}"];
            // A card's retention after the event, and after now; int(): toward zero.
            let expires = ((t.max(now) + self.card_retention) * 1000.0) as i64;
            let mut at = Vec::with_capacity(20);
            if expires < 0 {
                at.push(b'-');
            }
            decimal(&mut at, expires.unsigned_abs());
            let packed = Packer::new()
                .text("SET")
                .parts(&tag)
                .text(&tx.card_tag[..16.min(tx.card_tag.len())])
                .text("NX")
                .text("GET")
                .text("PXAT")
                .arg(&at)
                .finish();
            (packed, key(&tag))
        });
        let card = [root, b":card:{", tx.card_tag.as_bytes(), b"}"];
        let card_tx = [&card[..], &[b":tx"]].concat();
        let packed = Packer::new()
            .text("EVALSHA")
            .text(&self.card_sha)
            .text("2")
            .parts(&card_tx)
            .parts(&[&card[..], &[b":val"]].concat())
            .text(tx.id)
            .float(t)
            .arg(&stored(tx))
            .float(t - self.card_retention)
            .text(&self.card_ttl)
            .text(&self.card_max)
            .finish();
        let card = (packed, key(&card_tx));
        let tag = terminal_tag(tx.terminal_id);
        let terminal = [root, b":t:{", tag.as_bytes(), b"}"];
        let terminal_tx = [&terminal[..], &[b":tx"]].concat();
        let mut p = Packer::new();
        p.text("EVALSHA")
            .text(&self.terminal_sha)
            .text("3")
            .parts(&terminal_tx)
            .parts(&[&terminal[..], &[b":fraud"]].concat())
            .parts(&[&terminal[..], &[b":known"]].concat())
            .text(tx.id)
            .float(t)
            .float(t - self.terminal_retention)
            .text(&self.terminal_ttl)
            .text(&self.terminal_max);
        let end = t - self.delay;
        for w in &self.windows {
            p.float(end - w).float(end);
        }
        Calls { id, card, terminal: (p.finish(), key(&terminal_tx)) }
    }
}

/// A card's history from the card script's reply: its contents concatenated (24 bytes
/// each: time, amount, terminal crc, little-endian doubles), put in time order (a stable
/// sort, only when they are not in order already).
pub fn card_history(joined: &[u8]) -> Result<(Vec<f64>, Vec<f64>), String> {
    if !joined.len().is_multiple_of(24) {
        return Err(format!("a card's history of {} bytes is not whole entries of 24", joined.len()));
    }
    let double = |b: &[u8]| f64::from_le_bytes(b.try_into().expect("8 bytes"));
    let mut times = Vec::with_capacity(joined.len() / 24);
    let mut amounts = Vec::with_capacity(joined.len() / 24);
    for entry in joined.chunks_exact(24) {
        times.push(double(&entry[..8]));
        amounts.push(double(&entry[8..16]));
    }
    if times.iter().any(|t| t.is_nan()) {
        // Not a time the store writes: no order to give it (a sort by partial_cmp would
        // not be a total order), so it is refused as the bug it is.
        return Err("a card's history holds a time that is not a number".to_owned());
    }
    if times.windows(2).any(|w| w[0] > w[1]) {
        let mut order: Vec<usize> = (0..times.len()).collect();
        order.sort_by(|&a, &b| times[a].partial_cmp(&times[b]).unwrap_or(std::cmp::Ordering::Equal));
        let (t, a): (Vec<f64>, Vec<f64>) = order.iter().map(|&i| (times[i], amounts[i])).unzip();
        return Ok((t, a));
    }
    Ok((times, amounts))
}

/// Python's ``repr`` of a float: the shortest digits that read back as the same double
/// (ryu finds them, as Python's dtoa does), in Python's layout: exponent notation below
/// 1e-4 and from 1e16 on (``1e-05``, ``1e+16``), otherwise fixed with at least one decimal.
pub fn py_repr(x: f64, out: &mut String) {
    if x.is_nan() {
        out.push_str("nan");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "inf" } else { "-inf" });
        return;
    }
    if x == 0.0 {
        out.push_str(if x.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    let mut buffer = ryu::Buffer::new();
    let shortest = buffer.format_finite(x.abs()); // "ddd.ddd", "0.000ddd" or "d.ddde-7"
    let (mantissa, exp) = match shortest.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().expect("ryu's exponent is an integer")),
        None => (shortest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // The value is 0.DIGITS x 10^decpt, DIGITS without leading or trailing zeros.
    let all: String = [int, frac].concat();
    let lead = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_matches('0');
    let decpt = int.len() as i32 - lead as i32 + exp;
    let n = digits.len() as i32;
    if x < 0.0 {
        out.push('-');
    }
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    } else if decpt <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-decpt) as usize));
        out.push_str(digits);
    } else if decpt < n {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    } else {
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', (decpt - n) as usize));
        out.push_str(".0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(x: f64) -> String {
        let mut s = String::new();
        py_repr(x, &mut s);
        s
    }

    #[test]
    fn repr_like_python() {
        assert_eq!(r(1.7e9), "1700000000.0");
        assert_eq!(r(1700000000.123), "1700000000.123");
        assert_eq!(r(1e16), "1e+16");
        assert_eq!(r(1e15), "1000000000000000.0");
        assert_eq!(r(0.0001), "0.0001");
        assert_eq!(r(0.00001), "1e-05");
        assert_eq!(r(-1.5e-7), "-1.5e-07");
        assert_eq!(r(0.1), "0.1");
        assert_eq!(r(123.456), "123.456");
        assert_eq!(r(1.2345e100), "1.2345e+100");
        assert_eq!(r(-0.0), "-0.0");
        assert_eq!(r(5e-324), "5e-324");
        assert_eq!(r(1.7976931348623157e308), "1.7976931348623157e+308");
        assert_eq!(r(100.0), "100.0");
        assert_eq!(r(0.5), "0.5");
        assert_eq!(r(1234567890123456.7), "1234567890123456.8");
    }

    #[test]
    fn history_in_time_order() {
        let mut b = Vec::new();
        for (t, a) in [(3.0f64, 30.0f64), (1.0, 10.0), (1.0, 11.0)] {
            b.extend_from_slice(&t.to_le_bytes());
            b.extend_from_slice(&a.to_le_bytes());
            b.extend_from_slice(&0f64.to_le_bytes());
        }
        assert_eq!(card_history(&b).unwrap(), (vec![1.0, 1.0, 3.0], vec![10.0, 11.0, 30.0]));
        assert!(card_history(&b[..5]).is_err());
    }
}
