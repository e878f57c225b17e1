//! The mboxrd format, sans-IO: the `From ` separator line, `>From ` quoting and
//! unquoting, and finding message boundaries in a buffer.
//!
//! Layout of one message as we write it:
//!
//! ```text
//! From <sender> <asctime date in UTC>\n
//! <message, every line matching ^>*From  gets one more '>'>
//! [\n if the message did not end with one]
//! \n                                   (the blank separator line)
//! ```
//!
//! A message starts at the beginning of the file or at any line beginning with `From `
//! (every mbox writer quotes such lines in bodies). Decoding drops the separator line and
//! one `>` from quoted lines; the exact original length (kept in the index) then tells
//! whether a final newline was added. Lines are delimited by LF only, so CR, CRLF, NUL
//! and any other byte pass through untouched.

use memchr::memmem;
use std::sync::LazyLock;

/// Searchers built once: building one costs more than searching a small message.
static FROM: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"From "));
static NL_FROM: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\nFrom "));

/// Build the separator line for a message from `sender` received at `date` (Unix
/// seconds). An empty sender (the null reverse-path) becomes `MAILER-DAEMON`; white space
/// and control characters in the sender are replaced so the line stays parseable.
pub fn from_line(sender: &str, date: i64) -> Vec<u8> {
    let mut s: String = sender
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if s.is_empty() {
        s = "MAILER-DAEMON".to_string();
    }
    format!("From {s} {}\n", asctime(date)).into_bytes()
}

/// Append one message in mbox form to `out`. Returns the length of the `From ` line.
pub fn encode(out: &mut Vec<u8>, sender: &str, date: i64, data: &[u8]) -> usize {
    let from = from_line(sender, date);
    out.reserve(from.len() + data.len() + data.len() / 64 + 2);
    out.extend_from_slice(&from);
    escape_into(out, data);
    if !data.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.push(b'\n');
    from.len()
}

/// mboxrd quoting: one more `>` on each line matching `^>*From `.
pub fn escape_into(out: &mut Vec<u8>, data: &[u8]) {
    let mut line_start = 0;
    while line_start < data.len() {
        let line_end = memchr::memchr(b'\n', &data[line_start..])
            .map(|i| line_start + i + 1)
            .unwrap_or(data.len());
        let line = &data[line_start..line_end];
        if is_quoted_from(line, 0) {
            out.push(b'>');
        }
        out.extend_from_slice(line);
        line_start = line_end;
    }
}

/// True if `line` is `>`×n (n ≥ min_gt) followed by `From `.
fn is_quoted_from(line: &[u8], min_gt: usize) -> bool {
    let gts = line.iter().take_while(|&&b| b == b'>').count();
    gts >= min_gt && line[gts..].starts_with(b"From ")
}

/// Decode a message's span (from just after its `From ` line to its end, separator
/// included) back to the original bytes. `size`, when known from the index, is the exact
/// original length (it removes the newline we add to messages that lacked one).
pub fn decode(body: &[u8], size: Option<u64>) -> Vec<u8> {
    let body = strip_separator(body);
    let mut out = Vec::with_capacity(body.len());
    let mut line_start = 0;
    while line_start < body.len() {
        let line_end = memchr::memchr(b'\n', &body[line_start..])
            .map(|i| line_start + i + 1)
            .unwrap_or(body.len());
        let line = &body[line_start..line_end];
        if is_quoted_from(line, 1) {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
        line_start = line_end;
    }
    if let Some(size) = size {
        if (size as usize) < out.len() && out.ends_with(b"\n") && size as usize == out.len() - 1 {
            out.pop();
        }
    }
    out
}

/// Length of the decoded message without building it.
pub fn decoded_len(body: &[u8]) -> u64 {
    let body = strip_separator(body);
    let quoted = FROM
        .find_iter(body)
        .filter(|&i| {
            let line_start = body[..i]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            i > line_start && body[line_start..i].iter().all(|&b| b == b'>')
        })
        .count();
    (body.len() - quoted) as u64
}

/// Length of a message body without its separator line.
pub fn stripped_len(body: &[u8]) -> u64 {
    strip_separator(body).len() as u64
}

/// Every `From ` in `buf` (positions).
pub fn find_from(buf: &[u8]) -> impl Iterator<Item = usize> + '_ {
    FROM.find_iter(buf)
}

/// What a `From ` at `buf[i]` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromAt {
    /// At the start of a line: a message boundary.
    LineStart,
    /// After one or more `>` at the start of a line: a quoted line.
    Quoted,
    /// Anywhere else.
    InLine,
}

/// Classify the `From ` at `buf[i]` (`i ≥ 1`; `buf[0]` is a line start).
pub fn classify_from(buf: &[u8], i: usize) -> FromAt {
    if buf[i - 1] == b'\n' {
        return FromAt::LineStart;
    }
    let mut k = i;
    while k > 0 && buf[k - 1] == b'>' {
        k -= 1;
    }
    if k < i && (k == 0 || buf[k - 1] == b'\n') {
        FromAt::Quoted
    } else {
        FromAt::InLine
    }
}

/// The blank separator line is the last LF of a span ending in LF LF (or a lone LF).
fn strip_separator(body: &[u8]) -> &[u8] {
    if body.ends_with(b"\n\n") || body == b"\n" {
        &body[..body.len() - 1]
    } else {
        body
    }
}

/// Offsets (relative to `buf`) of every `From ` line that starts a message in `buf`,
/// where `buf[0]` is known to be at a line start.
pub fn boundaries(buf: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let first = buf.starts_with(b"From ").then_some(0);
    first
        .into_iter()
        .chain(NL_FROM.find_iter(buf).map(|i| i + 1))
}

/// Parse the date of a `From ` line (`From sender Www Mmm dd hh:mm:ss yyyy`), as Unix
/// seconds UTC. Lines with a trailing zone or `remote from` are accepted.
pub fn from_line_date(line: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(line).ok()?.trim_end();
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    // Find "Mmm dd hh:mm:ss yyyy" after the weekday, scanning from the left.
    (2..words.len().saturating_sub(3)).find_map(|i| {
        let month = MONTHS.iter().position(|m| *m == words[i])?;
        let day: u32 = words[i + 1].parse().ok()?;
        let mut hms = words[i + 2].split(':').map(|x| x.parse::<u32>());
        let (h, m) = (hms.next()?.ok()?, hms.next()?.ok()?);
        let s = hms.next().and_then(|x| x.ok()).unwrap_or(0);
        let year: i64 = words[i + 3].parse().ok()?;
        // Out-of-range fields make the date unknown rather than overflow.
        if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 || !(1..=9999).contains(&year) {
            return None;
        }
        let days = days_from_civil(year, month as u32 + 1, day);
        Some(days * 86400 + (h * 3600 + m * 60 + s) as i64)
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// `Www Mmm dd hh:mm:ss yyyy` (C asctime, day padded with a space) in UTC.
pub fn asctime(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        y
    )
}

/// RFC 5322 date-time in UTC (`Tue, 24 Nov 2026 20:34:25 +0000`), for trace headers.
pub fn rfc5322(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

// Howard Hinnant's civil calendar algorithms.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let from_len = encode(&mut out, "a@b", 0, data);
        let starts: Vec<usize> = boundaries(&out).collect();
        assert_eq!(starts, vec![0], "exactly one message boundary in {out:?}");
        assert_eq!(
            decoded_len(&out[from_len..]),
            decode(&out[from_len..], None).len() as u64
        );
        decode(&out[from_len..], Some(data.len() as u64))
    }

    #[test]
    fn transcript_of_quoting() {
        let mut out = Vec::new();
        encode(
            &mut out,
            "",
            1_700_000_000,
            b"From me\n>From you\nx From y\n",
        );
        assert_eq!(
            out,
            b"From MAILER-DAEMON Tue Nov 14 22:13:20 2023\n>From me\n>>From you\nx From y\n\n"
        );
    }

    #[test]
    fn no_final_newline_and_empty_message() {
        assert_eq!(round_trip(b"abc"), b"abc");
        assert_eq!(round_trip(b""), b"");
        assert_eq!(round_trip(b"\n"), b"\n");
        assert_eq!(round_trip(b"a\r\n\r\n"), b"a\r\n\r\n");
    }

    #[test]
    fn rfc5322_dates() {
        assert_eq!(rfc5322(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        // `date -u -d @1795552465 -R`
        assert_eq!(rfc5322(1_795_552_465), "Tue, 24 Nov 2026 20:34:25 +0000");
        assert_eq!(rfc5322(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn asctime_and_parse_agree() {
        for t in [0i64, 951_782_400, 1_700_000_000, 4_102_444_799] {
            let line = from_line("x@y", t);
            assert_eq!(
                from_line_date(&line),
                Some(t),
                "{}",
                String::from_utf8_lossy(&line)
            );
        }
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        // Found by fuzzing: huge fields must not overflow.
        assert_eq!(
            from_line_date(b"From x Mon Dec 5 455555555:55 2020\n"),
            None
        );
        assert_eq!(from_line_date(b"From x Mon Dec 99 10:00:00 2020\n"), None);
        assert_eq!(
            from_line_date(b"From MAILER-DAEMON  Fri Jul  8 12:08:34 2011\n"),
            Some(1_310_126_914)
        );
    }

    #[test]
    fn boundaries_of_several_messages() {
        let mut out = Vec::new();
        encode(&mut out, "a", 0, b"one\nFrom inside\n");
        let second = out.len();
        encode(&mut out, "b", 0, b"two");
        assert_eq!(boundaries(&out).collect::<Vec<_>>(), vec![0, second]);
    }

    proptest! {
        #[test]
        fn mboxrd_round_trip_is_exact(data in proptest::collection::vec(
            prop_oneof![
                Just(b"From ".to_vec()), Just(b">From ".to_vec()), Just(b">>From x".to_vec()),
                Just(b"\n".to_vec()), Just(b"\r".to_vec()), Just(b"\r\n".to_vec()),
                Just(b"\0".to_vec()), Just(b">".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..8),
            ], 0..40).prop_map(|parts| parts.concat()))
        {
            prop_assert_eq!(round_trip(&data), data);
        }

        #[test]
        fn arbitrary_bytes_round_trip(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(round_trip(&data), data);
        }
    }
}
