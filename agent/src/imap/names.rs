//! TEMPORARY stub (replaced on merge).
use imap_types::mailbox::Mailbox;

#[derive(Debug)]
pub struct NameError;

pub fn decode_mailbox(m: &Mailbox<'_>) -> Result<String, NameError> {
    match m {
        Mailbox::Inbox => Ok("INBOX".into()),
        Mailbox::Other(o) => String::from_utf8(o.inner().as_ref().to_vec()).map_err(|_| NameError),
    }
}
pub fn encode_mailbox(name: &str) -> String {
    name.to_string()
}
pub fn list_matches(reference: &str, pattern: &str, name: &str) -> bool {
    let full = format!("{reference}{pattern}");
    full == "*"
        || full == name
        || (full.ends_with('*') && name.starts_with(&full[..full.len() - 1]))
}
