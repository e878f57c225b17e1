//! Logins and recipient checks through real client libraries (Python's smtplib, imaplib
//! and poplib, each over STARTTLS/STLS), shared by the directory backend tests.

use std::net::SocketAddr;

use super::{python, Lab, IMAP, POP3, SMTP, SUBMISSION};

/// One script for all three protocols. Arguments arrive hex-encoded so that logins with
/// NUL or other control bytes reach the client library unchanged. It prints the server's
/// final answer to the login: `<code> <text>` for SMTP, `OK|NO|BAD <text>` for IMAP,
/// `+OK|-ERR <text>` for POP3.
const LOGIN: &str = r#"
import sys, ssl, smtplib, imaplib, poplib
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
login = bytes.fromhex(sys.argv[4]).decode('utf-8', 'surrogateescape')
pw = bytes.fromhex(sys.argv[5]).decode('utf-8', 'surrogateescape')
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def out(s):
    print(s.replace('\r', ' ').replace('\n', ' '))
if proto == 'smtp':
    s = smtplib.SMTP(host, port, timeout=30); s.ehlo('client.test'); s.starttls(context=ctx); s.ehlo('client.test')
    try:
        code, msg = s.login(login, pw)
    except smtplib.SMTPAuthenticationError as e:
        code, msg = e.smtp_code, e.smtp_error
    except smtplib.SMTPResponseException as e:
        code, msg = e.smtp_code, e.smtp_error
    out('%d %s' % (code, msg.decode(errors='replace')))
elif proto == 'imap':
    m = imaplib.IMAP4(host, port, timeout=30); m.starttls(ssl_context=ctx)
    try:
        typ, data = m._simple_command('LOGIN', m._quote(login), m._quote(pw))
        out('%s %s' % (typ, b' '.join(d for d in data if d).decode(errors='replace')))
    except imaplib.IMAP4.error as e:
        out('BAD %s' % e)
elif proto == 'pop3':
    p = poplib.POP3(host, port, timeout=30); p.stls(context=ctx)
    try:
        p.user(login); r = p.pass_(pw)
        out(r.decode(errors='replace'))
    except poplib.error_proto as e:
        out(e.args[0].decode(errors='replace') if isinstance(e.args[0], bytes) else str(e))
elif proto == 'rcpt':
    s = smtplib.SMTP(host, port, timeout=30); s.ehlo('client.test')
    s.mail('sender@remote.test')
    code, msg = s.rcpt(login)
    out('%d %s' % (code, msg.decode(errors='replace')))
"#;

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn run(proto: &str, addr: SocketAddr, login: &str, password: &str) -> String {
    python(
        LOGIN,
        &[
            proto,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            &hex(login),
            &hex(password),
        ],
    )
    .trim()
    .to_string()
}

/// SMTP AUTH on the submission port after STARTTLS: `"235 ..."`, `"535 ..."`, `"454 ..."`.
pub fn smtp_login(lab: &Lab, host: usize, login: &str, password: &str) -> String {
    run("smtp", lab.addr(host, SUBMISSION), login, password)
}

/// IMAP LOGIN after STARTTLS: `"OK ..."`, `"NO [AUTHENTICATIONFAILED] ..."`, ...
pub fn imap_login(lab: &Lab, host: usize, login: &str, password: &str) -> String {
    run("imap", lab.addr(host, IMAP), login, password)
}

/// POP3 USER/PASS after STLS: `"+OK ..."` or `"-ERR ..."`.
pub fn pop3_login(lab: &Lab, host: usize, login: &str, password: &str) -> String {
    run("pop3", lab.addr(host, POP3), login, password)
}

/// The three logins, in the order SMTP, IMAP, POP3.
pub fn logins(lab: &Lab, host: usize, login: &str, password: &str) -> [String; 3] {
    [
        smtp_login(lab, host, login, password),
        imap_login(lab, host, login, password),
        pop3_login(lab, host, login, password),
    ]
}

/// Whether all three logins succeeded.
pub fn accepted(r: &[String; 3]) -> bool {
    r[0].starts_with("235") && r[1].starts_with("OK") && r[2].starts_with("+OK")
}

/// Whether all three were refused as bad credentials (not as a temporary failure).
pub fn rejected(r: &[String; 3]) -> bool {
    r[0].starts_with("535")
        && (r[1].starts_with("NO [AUTHENTICATIONFAILED]") || r[1].starts_with("BAD"))
        && r[2].starts_with("-ERR")
        && !r[2].contains("[SYS/TEMP]")
}

/// Whether all three were refused with the temporary-failure answers.
pub fn unavailable(r: &[String; 3]) -> bool {
    r[0].starts_with("454 ")
        && r[0].contains("4.7.0")
        && r[1].starts_with("NO [UNAVAILABLE]")
        && r[2].starts_with("-ERR [SYS/TEMP]")
}

/// RCPT TO on port 25 (no AUTH needed for local domains): `"250 ..."`, `"550 ..."`, ...
pub fn rcpt(lab: &Lab, host: usize, address: &str) -> String {
    run("rcpt", lab.addr(host, SMTP), address, "")
}
