//! SMTP replies: a code, an RFC 3463 enhanced status code and text, already framed for
//! the wire (RFC 5321 §4.2, multi-line with `-`).

use std::fmt;

/// One complete reply (possibly multi-line).
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    esc: &'static str,
    wire: Vec<u8>,
}

impl Reply {
    /// `code esc text`, e.g. `Reply::new(550, "5.7.1", "relay denied")`; an empty `esc`
    /// leaves the enhanced code out (greeting, 354, 334).
    pub fn new(code: u16, esc: &'static str, text: &str) -> Reply {
        Reply::lines(code, esc, &[text])
    }

    /// A multi-line reply: every line carries the code, all but the last with `-`.
    pub fn lines(code: u16, esc: &'static str, lines: &[&str]) -> Reply {
        let mut wire = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            // Text comes partly from clients and directories: never let a CR or LF in.
            let clean: String = line
                .chars()
                .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
                .collect();
            let text = if esc.is_empty() {
                format!("{code}{sep}{clean}\r\n")
            } else {
                format!("{code}{sep}{esc} {clean}\r\n")
            };
            wire.extend_from_slice(text.as_bytes());
        }
        Reply { code, esc, wire }
    }

    pub fn code(&self) -> u16 {
        self.code
    }

    /// The RFC 3463 enhanced status code ("" if none).
    pub fn enhanced(&self) -> &'static str {
        self.esc
    }

    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(String::from_utf8_lossy(&self.wire).trim_end())
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        assert_eq!(
            Reply::new(550, "5.7.1", "relay\r\ndenied").wire(),
            b"550 5.7.1 relay  denied\r\n"
        );
        assert_eq!(
            Reply::lines(250, "", &["a", "b", "c"]).wire(),
            b"250-a\r\n250-b\r\n250 c\r\n"
        );
        assert_eq!(Reply::new(354, "", "go").wire(), b"354 go\r\n");
    }
}
