//! RFC 2136 mode: instead of serving the zones, keep an existing primary (BIND, Knot,
//! PowerDNS) in step by sending it TSIG-signed (RFC 8945) dynamic updates for the
//! *dynamic* records only: the MX set at each origin and `mail.<origin>` A/AAAA.
//!
//! Owns the TSIG secret file format ([`parse_secret`]), the update message for one zone
//! and the exchange with the primary over TCP. Everything else in the zone (SOA, NS,
//! hosts) is the primary's: in particular the SOA serial, which the primary bumps itself
//! on every applied update, so none is ever sent.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hamail_storage::cluster::Rfc2136Config;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::zone::{Snapshot, Zone};

/// The whole exchange with the primary (connect, send, receive) must fit in this: the
/// controller must not hang on a dead primary, it retries on its next pass.
const TIMEOUT: Duration = Duration::from_secs(5);

/// TSIG fudge (allowed clock skew, seconds): 300 is what BIND and `nsupdate` use.
const FUDGE: u16 = 300;

/// Why an update could not be prepared, sent or was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    #[error("reading the TSIG secret file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The secret file is neither a base64 secret nor a BIND `key` clause.
    #[error("TSIG secret: {0}")]
    Secret(String),
    /// The key configuration does not hold together (algorithm, key name, mismatch
    /// between the config and the key clause).
    #[error("TSIG key: {0}")]
    Key(String),
    /// A snapshot record that cannot be put on the wire.
    #[error("zone {zone}: record {name} {rtype} {value:?}: {reason}")]
    Record {
        zone: String,
        name: String,
        rtype: String,
        value: String,
        reason: String,
    },
    #[error("update of zone {zone} via {server}: {source}")]
    Io {
        zone: String,
        server: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("update of zone {zone} via {server}: no answer within {TIMEOUT:?}")]
    Timeout { zone: String, server: SocketAddr },
    /// The reply is not a well-formed answer to our update.
    #[error("update of zone {zone} via {server}: bad reply: {reason}")]
    Protocol {
        zone: String,
        server: SocketAddr,
        reason: String,
    },
    /// The reply's TSIG is missing or does not verify with our key: it cannot be
    /// trusted, whatever it says.
    #[error("update of zone {zone} via {server}: reply TSIG does not verify: {reason}")]
    ReplyNotAuthentic {
        zone: String,
        server: SocketAddr,
        reason: String,
    },
    /// The server answered with an rcode other than NOERROR; nothing was changed (an
    /// update is atomic).
    #[error("update of zone {zone} via {server} rejected: {rcode}{}{hint}", tsig_error.as_ref().map(|e| format!(" (TSIG {e})")).unwrap_or_default())]
    Rejected {
        zone: String,
        server: SocketAddr,
        /// Mnemonic: `NOTAUTH`, `REFUSED`, `SERVFAIL`, ...
        rcode: String,
        /// `BADSIG`, `BADKEY`, `BADTIME` from the reply's TSIG record, if any.
        tsig_error: Option<String>,
        /// Operator advice for the common causes, starting with `": "`, or empty.
        hint: &'static str,
    },
}

/// Sends the dynamic records of a [`Snapshot`] to the configured primary.
pub struct Updater {
    server: SocketAddr,
    key_name: String,
    algorithm: String,
    signer: TSigner,
}

/// Without the secret (and without `TSigner`, which holds it).
impl fmt::Debug for Updater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Updater")
            .field("server", &self.server)
            .field("key_name", &self.key_name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// `hmac-sha256` etc. as in `tsig-keygen -a` and BIND's `algorithm`; case-insensitive.
fn algorithm_from_name(name: &str) -> Result<TsigAlgorithm, UpdateError> {
    match name.trim_end_matches('.').to_ascii_lowercase().as_str() {
        "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
        other => Err(UpdateError::Key(format!(
            "algorithm {other:?} is not supported (use hmac-sha256, hmac-sha384 or hmac-sha512)"
        ))),
    }
}

/// Key names compare as DNS names: case-insensitive, trailing dot optional.
fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

impl Updater {
    /// Reads and parses the secret file now (a broken file is a startup error).
    pub fn new(config: &Rfc2136Config) -> Result<Updater, UpdateError> {
        let text = std::fs::read_to_string(&config.secret_file).map_err(|source| {
            UpdateError::SecretFile {
                path: config.secret_file.clone(),
                source,
            }
        })?;
        let (file_name, file_algorithm, secret) = parse_secret(&text)?;
        // A key clause names its key and algorithm; when they disagree with the config
        // the server would answer BADKEY on every update, so say it at startup instead.
        if let Some(n) = &file_name {
            if !same_name(n, &config.key_name) {
                return Err(UpdateError::Key(format!(
                    "{} holds key {n:?} but key_name is {:?}",
                    config.secret_file.display(),
                    config.key_name
                )));
            }
        }
        if let Some(a) = &file_algorithm {
            if algorithm_from_name(a)? != algorithm_from_name(&config.algorithm)? {
                return Err(UpdateError::Key(format!(
                    "{} holds a {a} key but algorithm is {:?} (set algorithm = {a:?})",
                    config.secret_file.display(),
                    config.algorithm
                )));
            }
        }
        let algorithm = algorithm_from_name(&config.algorithm)?;
        let name = Name::from_ascii(&config.key_name)
            .map_err(|e| UpdateError::Key(format!("key_name {:?}: {e}", config.key_name)))?;
        let signer = TSigner::new(secret, algorithm, name, FUDGE)
            .map_err(|e| UpdateError::Key(e.to_string()))?;
        Ok(Updater {
            server: config.server,
            key_name: config.key_name.clone(),
            algorithm: config.algorithm.to_ascii_lowercase(),
            signer,
        })
    }

    /// Make the primary's dynamic records equal to the snapshot's: for each zone, ONE
    /// update message (atomic on the server) that deletes the MX RRset at the origin and
    /// the A and AAAA RRsets at `mail.<origin>`, then adds the snapshot's dynamic records.
    ///
    /// Every zone is attempted even when an earlier one fails (one broken zone must not
    /// hold the others back); the first error is returned.
    pub async fn apply(&self, snapshot: &Snapshot) -> Result<(), UpdateError> {
        let mut first_error = None;
        for zone in &snapshot.zones {
            let result = match update_message(zone) {
                Ok(message) => self.send(&zone.origin, message).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    tracing::debug!(zone = %zone.origin, server = %self.server, "rfc2136 update applied")
                }
                Err(e) => {
                    tracing::warn!(zone = %zone.origin, error = %e, "rfc2136 update failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Sign, send and check the reply of one update.
    async fn send(&self, zone: &str, mut message: Message) -> Result<(), UpdateError> {
        let server = self.server;
        let protocol = |reason: String| UpdateError::Protocol {
            zone: zone.to_string(),
            server,
            reason,
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| protocol(format!("system clock before 1970: {e}")))?
            .as_secs();
        let verifier = message
            .finalize(&self.signer, now)
            .map_err(|e| protocol(format!("signing: {e}")))?;
        let wire = message
            .to_vec()
            .map_err(|e| protocol(format!("encoding: {e}")))?;
        let reply = tokio::time::timeout(TIMEOUT, exchange(server, &wire))
            .await
            .map_err(|_| UpdateError::Timeout {
                zone: zone.to_string(),
                server,
            })?
            .map_err(|source| UpdateError::Io {
                zone: zone.to_string(),
                server,
                source,
            })?;
        let response =
            Message::from_vec(&reply).map_err(|e| protocol(format!("undecodable: {e}")))?;
        if response.metadata.id != message.metadata.id
            || response.metadata.message_type != MessageType::Response
            || response.metadata.op_code != OpCode::Update
        {
            return Err(protocol(format!(
                "not the answer to update id {} (id {}, {:?} {:?})",
                message.metadata.id,
                response.metadata.id,
                response.metadata.message_type,
                response.metadata.op_code
            )));
        }
        let rcode = response.metadata.response_code;
        let tsig_error = response
            .signature()
            .and_then(|s| s.data.error)
            .map(tsig_error_name);
        // A server that did not recognise our key or signature answers with an unsigned
        // TSIG (RFC 8945 §5.3.2): there is nothing to verify, and the rejection is the
        // news. Any other reply must carry a TSIG that verifies, or it may be forged.
        if tsig_error.is_none() || rcode == ResponseCode::NoError {
            let mut verifier = verifier.ok_or_else(|| protocol("no TSIG verifier".into()))?;
            verifier
                .verify(&reply)
                .map_err(|e| UpdateError::ReplyNotAuthentic {
                    zone: zone.to_string(),
                    server,
                    reason: e.to_string(),
                })?;
        }
        if rcode == ResponseCode::NoError {
            return Ok(());
        }
        let hint = match rcode {
            ResponseCode::NotAuth | ResponseCode::Refused => {
                ": the key (name, algorithm or secret) does not match the server's, or its \
                 update policy (allow-update / update-policy) does not allow this key to \
                 change these records"
            }
            _ => "",
        };
        Err(UpdateError::Rejected {
            zone: zone.to_string(),
            server,
            rcode: rcode_name(rcode),
            tsig_error,
            hint,
        })
    }
}

/// One request/response over TCP: two-byte length prefix each way (RFC 1035 §4.2.2).
async fn exchange(server: SocketAddr, wire: &[u8]) -> std::io::Result<Vec<u8>> {
    let len = u16::try_from(wire.len()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "update message larger than 65535 bytes",
        )
    })?;
    let mut stream = TcpStream::connect(server).await?;
    let mut out = Vec::with_capacity(wire.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(wire);
    stream.write_all(&out).await?;
    let reply_len = stream.read_u16().await?;
    let mut reply = vec![0; usize::from(reply_len)];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

fn tsig_error_name(error: TsigError) -> String {
    match error {
        TsigError::BadSig => "BADSIG".into(),
        TsigError::BadKey => "BADKEY".into(),
        TsigError::BadTime => "BADTIME".into(),
        TsigError::BadTrunc => "BADTRUNC".into(),
        TsigError::Unknown(code) => format!("error {code}"),
    }
}

/// `example.test` → the absolute wire name.
fn absolute_name(name: &str) -> Result<Name, String> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).map_err(|e| e.to_string())
}

/// The update for one zone (unsigned): zone section = the origin's SOA class IN; update
/// section = delete MX at the origin, A and AAAA at `mail.<origin>` (and any other
/// RRset a dynamic record of the snapshot lives in), then add every dynamic record.
/// Deletes come first: RFC 2136 §3.4.2 applies the update section in order.
fn update_message(zone: &Zone) -> Result<Message, UpdateError> {
    let record_error = |name: &str, rtype: &str, value: &str, reason: String| UpdateError::Record {
        zone: zone.origin.clone(),
        name: name.to_string(),
        rtype: rtype.to_string(),
        value: value.to_string(),
        reason,
    };
    let origin =
        absolute_name(&zone.origin).map_err(|e| record_error(&zone.origin, "SOA", "", e))?;
    let mail = format!("mail.{}", zone.origin);
    let mut deletes: Vec<(String, RecordType)> = vec![
        (zone.origin.clone(), RecordType::MX),
        (mail.clone(), RecordType::A),
        (mail, RecordType::AAAA),
    ];
    let mut adds = Vec::new();
    for r in zone.records.iter().filter(|r| r.dynamic) {
        let rtype: RecordType = r
            .rtype
            .parse()
            .map_err(|e| record_error(&r.name, &r.rtype, &r.value, format!("{e}")))?;
        let name =
            absolute_name(&r.name).map_err(|e| record_error(&r.name, &r.rtype, &r.value, e))?;
        if !origin.zone_of(&name) {
            return Err(record_error(
                &r.name,
                &r.rtype,
                &r.value,
                "outside the zone".into(),
            ));
        }
        let rdata = RData::try_from_str(rtype, &r.value)
            .map_err(|e| record_error(&r.name, &r.rtype, &r.value, e.to_string()))?;
        if !deletes.iter().any(|(n, t)| n == &r.name && *t == rtype) {
            deletes.push((r.name.clone(), rtype));
        }
        let mut record = Record::from_rdata(name, r.ttl, rdata);
        record.dns_class = DNSClass::IN;
        adds.push(record);
    }

    let mut zone_query = Query::query(origin, RecordType::SOA);
    zone_query.set_query_class(DNSClass::IN);
    let mut message = Message::query();
    message.metadata.op_code = OpCode::Update;
    message.metadata.recursion_desired = false;
    message.add_zone(zone_query);
    for (name, rtype) in deletes {
        let name = absolute_name(&name).map_err(|e| record_error(&name, "", "", e))?;
        // RFC 2136 §2.5.2 "Delete an RRset": class ANY, TTL 0, empty RDATA.
        let mut record = Record::update0(name, 0, rtype);
        record.dns_class = DNSClass::ANY;
        message.add_update(record);
    }
    for record in adds {
        message.add_update(record);
    }
    Ok(message)
}

/// A secret file's contents: the key name and algorithm when the file names them (a
/// `key` clause does), and the decoded secret.
pub type ParsedSecret = (Option<String>, Option<String>, Vec<u8>);

/// Parse a TSIG secret file: either the bare base64 secret, or a BIND `key` clause as
/// written by `tsig-keygen` (`key "name" { algorithm hmac-sha256; secret "..."; };`).
/// Returns the key name and algorithm when the file names them, and the secret.
pub fn parse_secret(text: &str) -> Result<ParsedSecret, UpdateError> {
    let tokens = tokenize(text)?;
    let decode = |b64: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| UpdateError::Secret(format!("secret is not base64: {e}")))
            .and_then(|s| {
                if s.is_empty() {
                    Err(UpdateError::Secret("the secret is empty".into()))
                } else {
                    Ok(s)
                }
            })
    };
    match tokens.first() {
        None => Err(UpdateError::Secret("the file is empty".into())),
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("key") => {
            parse_key_clause(&tokens[1..], decode)
        }
        // Bare secret; base64 may have been wrapped over several lines.
        Some(_) => {
            let mut b64 = String::new();
            for t in &tokens {
                match t {
                    Token::Word(w) => b64.push_str(w),
                    _ => {
                        return Err(UpdateError::Secret(
                            "expected a base64 secret or a `key \"name\" { ... };` clause".into(),
                        ))
                    }
                }
            }
            Ok((None, None, decode(&b64)?))
        }
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    /// Bare word, or a quoted string's contents.
    Word(String),
    Punct(char),
}

/// named.conf lexing: words, `"strings"`, `{ } ;`, and `#`, `//`, `/* */` comments.
fn tokenize(text: &str) -> Result<Vec<Token>, UpdateError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => {
                chars.by_ref().find(|&c| c == '\n');
            }
            '/' if chars.peek() == Some(&'/') => {
                chars.by_ref().find(|&c| c == '\n');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                let closed = chars.by_ref().any(|c| {
                    let end = prev == '*' && c == '/';
                    prev = c;
                    end
                });
                if !closed {
                    return Err(UpdateError::Secret("unterminated /* comment".into()));
                }
            }
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => return Err(UpdateError::Secret("unterminated string".into())),
                    }
                }
                tokens.push(Token::Word(s));
            }
            '{' | '}' | ';' => tokens.push(Token::Punct(c)),
            c => {
                let mut s = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '{' | '}' | ';' | '"' | '#') {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                tokens.push(Token::Word(s));
            }
        }
    }
    Ok(tokens)
}

/// After `key`: `name { algorithm A; secret "S"; };`, nothing else after it.
fn parse_key_clause(
    tokens: &[Token],
    decode: impl Fn(&str) -> Result<Vec<u8>, UpdateError>,
) -> Result<ParsedSecret, UpdateError> {
    let bad = |what: &str| UpdateError::Secret(format!("key clause: {what}"));
    let mut it = tokens.iter();
    let name = match it.next() {
        Some(Token::Word(n)) => n.trim_end_matches('.').to_string(),
        _ => return Err(bad("expected the key name after `key`")),
    };
    if it.next() != Some(&Token::Punct('{')) {
        return Err(bad("expected `{` after the key name"));
    }
    let (mut algorithm, mut secret) = (None, None);
    loop {
        match it.next() {
            Some(Token::Punct('}')) => break,
            Some(Token::Word(stmt)) => {
                let value = match (it.next(), it.next()) {
                    (Some(Token::Word(v)), Some(Token::Punct(';'))) => v.clone(),
                    _ => return Err(bad(&format!("expected `{stmt} VALUE;`"))),
                };
                match stmt.to_ascii_lowercase().as_str() {
                    "algorithm" => algorithm = Some(value.to_ascii_lowercase()),
                    "secret" => secret = Some(value),
                    other => return Err(bad(&format!("unknown statement {other:?}"))),
                }
            }
            _ => return Err(bad("expected `algorithm ...;`, `secret \"...\";` or `}`")),
        }
    }
    if it.next() != Some(&Token::Punct(';')) {
        return Err(bad("expected `;` after `}`"));
    }
    if it.next().is_some() {
        return Err(bad("one key clause per file, nothing after it"));
    }
    let secret = secret.ok_or_else(|| bad("no `secret`"))?;
    Ok((Some(name), algorithm, decode(&secret)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::Rec;

    /// As printed by `tsig-keygen -a hmac-sha256 hamail-key` (BIND 9.18).
    const KEYGEN: &str = "key \"hamail-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"vQk9Wh047Hqp7CfenPqbkQVjBM+tgN27hDqjJOqRBKk=\";\n};\n";

    fn secret_bytes() -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode("vQk9Wh047Hqp7CfenPqbkQVjBM+tgN27hDqjJOqRBKk=")
            .unwrap()
    }

    #[test]
    fn parses_tsig_keygen_output() {
        let (name, alg, secret) = parse_secret(KEYGEN).unwrap();
        assert_eq!(name.as_deref(), Some("hamail-key"));
        assert_eq!(alg.as_deref(), Some("hmac-sha256"));
        assert_eq!(secret, secret_bytes());
        assert_eq!(secret.len(), 32);
    }

    #[test]
    fn parses_bare_secret_and_commented_clause() {
        let (name, alg, secret) =
            parse_secret("vQk9Wh047Hqp7CfenPqbkQVjBM+tgN27hDqjJOqRBKk=\n").unwrap();
        assert_eq!((name, alg), (None, None));
        assert_eq!(secret, secret_bytes());
        // Wrapped over lines.
        let (_, _, wrapped) =
            parse_secret("  vQk9Wh047Hqp7CfenPqbkQVj\nBM+tgN27hDqjJOqRBKk=  \n").unwrap();
        assert_eq!(wrapped, secret_bytes());
        let text = "# made by hand\nkey hamail-key. { // the key\n  ALGORITHM HMAC-SHA512;\n  /* base64 */ secret \"vQk9Wh047Hqp7CfenPqbkQVjBM+tgN27hDqjJOqRBKk=\";\n};";
        let (name, alg, secret) = parse_secret(text).unwrap();
        assert_eq!(name.as_deref(), Some("hamail-key"));
        assert_eq!(alg.as_deref(), Some("hmac-sha512"));
        assert_eq!(secret, secret_bytes());
    }

    #[test]
    fn rejects_broken_files() {
        for text in [
            "",
            "   \n",
            "not base64!",
            "key \"k\" { algorithm hmac-sha256; };",
            "key \"k\" { algorithm hmac-sha256; secret \"abc=\" };",
            "key \"k\" { secret \"vQk9\"; }",
            "key \"k\" { secret \"vQk9\"; }; key \"j\" { secret \"vQk9\"; };",
            "key \"k\" { secret \"vQk9; };",
            "key \"k\" { color blue; secret \"vQk9\"; };",
            "/* never closed",
            "\"\"",
        ] {
            assert!(
                matches!(parse_secret(text), Err(UpdateError::Secret(_))),
                "{text:?}"
            );
        }
    }

    fn config(dir: &std::path::Path, file: &str, key_name: &str, algorithm: &str) -> Rfc2136Config {
        let path = dir.join("key");
        std::fs::write(&path, file).unwrap();
        Rfc2136Config {
            server: "127.0.0.1:53".parse().unwrap(),
            key_name: key_name.into(),
            algorithm: algorithm.into(),
            secret_file: path,
        }
    }

    #[test]
    fn new_checks_the_key_against_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let u = Updater::new(&config(dir.path(), KEYGEN, "Hamail-Key.", "hmac-sha256")).unwrap();
        let debug = format!("{u:?}");
        assert!(
            debug.contains("Hamail-Key") && !debug.contains("vQk9"),
            "{debug}"
        );
        let err = Updater::new(&config(dir.path(), KEYGEN, "other", "hmac-sha256")).unwrap_err();
        assert!(err.to_string().contains("key_name"), "{err}");
        let err =
            Updater::new(&config(dir.path(), KEYGEN, "hamail-key", "hmac-sha512")).unwrap_err();
        assert!(
            err.to_string().contains("set algorithm = \"hmac-sha256\""),
            "{err}"
        );
        let err = Updater::new(&config(dir.path(), "c2VjcmV0", "k", "hmac-md5")).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
        Updater::new(&config(dir.path(), "c2VjcmV0", "k", "hmac-sha384")).unwrap();
        let mut missing = config(dir.path(), "", "k", "hmac-sha256");
        missing.secret_file = dir.path().join("absent");
        assert!(matches!(
            Updater::new(&missing),
            Err(UpdateError::SecretFile { .. })
        ));
    }

    fn rec(name: &str, rtype: &str, value: &str, dynamic: bool) -> Rec {
        Rec {
            name: name.into(),
            ttl: 30,
            rtype: rtype.into(),
            value: value.into(),
            dynamic,
        }
    }

    #[test]
    fn one_message_deletes_then_adds_the_dynamic_records() {
        let zone = Zone {
            origin: "example.test".into(),
            serial: 7,
            records: vec![
                rec(
                    "example.test",
                    "SOA",
                    "ns.example.test. hostmaster.example.test. 7 300 60 1209600 30",
                    false,
                ),
                rec("example.test", "NS", "ns.example.test.", false),
                rec("example.test", "MX", "10 host2.example.test.", true),
                rec("example.test", "MX", "20 host1.example.test.", true),
                rec("mail.example.test", "AAAA", "fd00::12", true),
                rec("host1.example.test", "A", "10.0.0.11", false),
            ],
        };
        let m = update_message(&zone).unwrap();
        assert_eq!(m.metadata.op_code, OpCode::Update);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.queries[0].query_type(), RecordType::SOA);
        assert_eq!(m.queries[0].name().to_string(), "example.test.");
        // The update section is the authority section on the wire.
        let updates: Vec<String> = m
            .authorities
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {} {}",
                    r.name,
                    r.ttl,
                    r.dns_class,
                    r.record_type(),
                    r.data
                )
            })
            .collect();
        assert_eq!(updates.len(), 6, "{updates:#?}");
        assert_eq!(updates[0], "example.test. 0 ANY MX UPDATE");
        assert_eq!(updates[1], "mail.example.test. 0 ANY A UPDATE");
        assert_eq!(updates[2], "mail.example.test. 0 ANY AAAA UPDATE");
        assert_eq!(updates[3], "example.test. 30 IN MX 10 host2.example.test.");
        assert_eq!(updates[4], "example.test. 30 IN MX 20 host1.example.test.");
        assert_eq!(updates[5], "mail.example.test. 30 IN AAAA fd00::12");
        assert!(m.to_vec().is_ok());

        let mut bad = zone.clone();
        bad.records
            .push(rec("mail.example.test", "A", "not-an-address", true));
        assert!(matches!(
            update_message(&bad),
            Err(UpdateError::Record { .. })
        ));
        let mut outside = zone;
        outside
            .records
            .push(rec("mail.example.org", "A", "10.0.0.1", true));
        assert!(matches!(
            update_message(&outside),
            Err(UpdateError::Record { .. })
        ));
    }

    /// How the fake primary answers.
    #[derive(Clone, Copy)]
    enum Reply {
        /// Signed with the key, as a real server does.
        Signed(ResponseCode),
        /// Unsigned: a forged or broken answer.
        Unsigned(ResponseCode),
        /// Signed with the key but for another request id.
        WrongId,
    }

    /// A one-shot TCP server that answers one update as told; returns the address and
    /// the decoded request.
    async fn fake_primary(
        signer: TSigner,
        reply: Reply,
    ) -> (SocketAddr, tokio::task::JoinHandle<Message>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let len = stream.read_u16().await.unwrap();
            let mut buf = vec![0; usize::from(len)];
            stream.read_exact(&mut buf).await.unwrap();
            let request = Message::from_vec(&buf).unwrap();
            let (id, rcode, sign) = match reply {
                Reply::Signed(rcode) => (request.metadata.id, rcode, true),
                Reply::Unsigned(rcode) => (request.metadata.id, rcode, false),
                Reply::WrongId => (
                    request.metadata.id.wrapping_add(1),
                    ResponseCode::NoError,
                    true,
                ),
            };
            let mut response = Message::error_msg(id, OpCode::Update, rcode);
            if sign {
                let request_mac = request.signature().unwrap().data.mac.clone();
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let context =
                    hickory_proto::rr::TSigResponseContext::new(id, now, signer, request_mac, None);
                let tsig = context.sign(&response.to_vec().unwrap()).unwrap();
                response.set_signature(tsig);
            }
            let wire = response.to_vec().unwrap();
            stream
                .write_all(&u16::try_from(wire.len()).unwrap().to_be_bytes())
                .await
                .unwrap();
            stream.write_all(&wire).await.unwrap();
            request
        });
        (addr, task)
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            serial: 1,
            zones: vec![Zone {
                origin: "example.test".into(),
                serial: 1,
                records: vec![rec("example.test", "MX", "10 host1.example.test.", true)],
            }],
        }
    }

    async fn apply_against(reply: Reply) -> Result<Message, UpdateError> {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), KEYGEN, "hamail-key", "hmac-sha256");
        let updater = Updater::new(&cfg).unwrap();
        let (server, task) = fake_primary(updater.signer.clone(), reply).await;
        let updater = Updater { server, ..updater };
        let result = updater.apply(&snapshot()).await;
        let request = task.await.unwrap();
        result.map(|()| request)
    }

    #[tokio::test]
    async fn replies_must_be_signed_and_match() {
        let request = apply_against(Reply::Signed(ResponseCode::NoError))
            .await
            .unwrap();
        // Sent signed, with the key's name.
        assert_eq!(request.signature().unwrap().name.to_string(), "hamail-key.");
        let err = apply_against(Reply::Signed(ResponseCode::Refused))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, UpdateError::Rejected { rcode, tsig_error: None, .. } if rcode == "REFUSED"),
            "{err}"
        );
        assert!(err.to_string().contains("update policy"), "{err}");
        for reply in [
            Reply::Unsigned(ResponseCode::NoError),
            Reply::Unsigned(ResponseCode::Refused),
        ] {
            let err = apply_against(reply).await.unwrap_err();
            assert!(
                matches!(err, UpdateError::ReplyNotAuthentic { .. }),
                "{err}"
            );
        }
        let err = apply_against(Reply::WrongId).await.unwrap_err();
        assert!(matches!(err, UpdateError::Protocol { .. }), "{err}");
    }

    #[test]
    fn rcode_names() {
        assert_eq!(rcode_name(ResponseCode::NotAuth), "NOTAUTH");
        assert_eq!(rcode_name(ResponseCode::Refused), "REFUSED");
        assert_eq!(rcode_name(ResponseCode::BADSIG), "RCODE16");
        assert_eq!(tsig_error_name(TsigError::BadKey), "BADKEY");
    }
}
