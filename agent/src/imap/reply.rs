//! What a command answers: [`Reply`] (responses, and whether the connection closes), the
//! status responses and codes, and the mapping of spool errors to IMAP answers — the one
//! place that decides between `NO`, `NO [UNAVAILABLE]` and `BYE`.

use hamail_storage::{FolderError, StorageError};
use imap_types::core::{IString, Tag};
use imap_types::response::{Code, CodeOther, Response, Status};
use imap_types::IntoStatic;

use super::view::ValidityChanged;

/// What a command produced.
#[derive(Debug, Default)]
pub struct Reply {
    /// Already-encoded responses sent before `responses` (the FETCH fast path).
    pub raw: Vec<u8>,
    pub responses: Vec<Response<'static>>,
    /// Close the connection after sending (LOGOUT, UIDVALIDITY change).
    pub close: bool,
}

impl Reply {
    pub fn one(r: Response<'static>) -> Reply {
        Reply {
            raw: Vec::new(),
            responses: vec![r],
            close: false,
        }
    }
}

/// A response as bytes on the wire.
pub fn encode(r: &Response<'_>) -> Vec<u8> {
    use imap_codec::encode::Encoder;
    imap_codec::ResponseCodec::default().encode(r).dump()
}

/// Tagged and untagged status responses; texts are ours, so they always validate.
pub fn status(
    tag: Option<&Tag<'_>>,
    kind: Kind,
    code: Option<Code<'static>>,
    text: &str,
) -> Response<'static> {
    let tag = tag.map(|t| t.clone().into_static());
    let text = if text.is_empty() { "." } else { text };
    let s = match kind {
        Kind::Ok => Status::ok(tag, code, text.to_string()),
        Kind::No => Status::no(tag, code, text.to_string()),
        Kind::Bad => Status::bad(tag, code, text.to_string()),
    };
    Response::Status(s.unwrap_or_else(|_| {
        Status::Untagged(imap_types::response::StatusBody {
            kind: imap_types::response::StatusKind::Bad,
            code: None,
            text: imap_types::core::Text::unvalidated("internal error".to_string()),
        })
    }))
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Ok,
    No,
    Bad,
}

/// A response code that imap-types has no variant for (RFC 5530 codes and friends).
pub fn code(name: &'static str) -> Code<'static> {
    Code::Other(CodeOther::unvalidated(name.as_bytes()))
}

pub fn storage_no(tag: &Tag<'_>, e: &StorageError) -> Response<'static> {
    // The client's request, not the store, is the problem (permanent): a keyword the
    // mailbox has no room for, or a name the spool cannot hold.
    match e {
        StorageError::TooManyKeywords { .. } => {
            return status(Some(tag), Kind::No, Some(code("LIMIT")), &e.to_string())
        }
        StorageError::InvalidName { reason, .. } => {
            return status(Some(tag), Kind::No, Some(code("CANNOT")), reason)
        }
        _ => {}
    }
    if matches!(e, StorageError::EmptyMessage) {
        // RFC 5530 CANNOT: no retry can store it (an APPEND of an empty literal).
        return status(
            Some(tag),
            Kind::No,
            Some(code("CANNOT")),
            "Zero-byte message",
        );
    }
    tracing::warn!(error = %e, "IMAP command failed on the spool");
    if matches!(e, StorageError::NoSpace { .. }) {
        return status(
            Some(tag),
            Kind::No,
            Some(code("OVERQUOTA")),
            "No space left on the mail store, try again later",
        );
    }
    status(
        Some(tag),
        Kind::No,
        Some(code("UNAVAILABLE")),
        "Mail store temporarily unavailable, try again",
    )
}

pub fn folder_no(tag: &Tag<'_>, e: &FolderError) -> Response<'static> {
    match e {
        FolderError::AlreadyExists => status(
            Some(tag),
            Kind::No,
            Some(code("ALREADYEXISTS")),
            "Mailbox already exists",
        ),
        FolderError::NonExistent => status(
            Some(tag),
            Kind::No,
            Some(code("NONEXISTENT")),
            "No such mailbox",
        ),
        FolderError::ParentIsMailbox | FolderError::HasChildren | FolderError::InboxIsPermanent => {
            status(Some(tag), Kind::No, Some(code("CANNOT")), &e.to_string())
        }
        FolderError::Storage(StorageError::InvalidName { .. }) => status(
            Some(tag),
            Kind::No,
            Some(code("CANNOT")),
            "Invalid mailbox name",
        ),
        FolderError::Storage(e) => storage_no(tag, e),
    }
}

/// `NO [READ-ONLY]`: a change asked of a mailbox selected with EXAMINE.
pub fn read_only(tag: &Tag<'_>) -> Reply {
    Reply::one(status(
        Some(tag),
        Kind::No,
        Some(Code::ReadOnly),
        "Mailbox is read-only",
    ))
}

/// Why a command on the selected mailbox stopped before its tagged OK.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// The spool failed (temporary or permanent): a tagged `NO`.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The mailbox was rebuilt under the session (RFC 3501 §2.3.1.1): the client's UIDs
    /// mean nothing any more, so the session ends with `BYE`.
    #[error("UIDVALIDITY changed")]
    ValidityChanged,
}

impl From<ValidityChanged> for CmdError {
    fn from(_: ValidityChanged) -> CmdError {
        CmdError::ValidityChanged
    }
}

/// `* BYE` and close: the selected mailbox's UIDVALIDITY changed.
pub fn validity_changed() -> Reply {
    Reply {
        raw: Vec::new(),
        responses: vec![bye(
            "Mailbox was rebuilt (UIDVALIDITY changed); please reconnect",
        )],
        close: true,
    }
}

/// An untagged BYE; texts are ours, so they always validate.
pub fn bye(text: &str) -> Response<'static> {
    Response::Status(Status::bye(None, text.to_string()).unwrap_or_else(|_| {
        Status::Bye(imap_types::response::Bye {
            code: None,
            text: imap_types::core::Text::unvalidated("bye".to_string()),
        })
    }))
}

/// The end of every command on the selected mailbox: the untagged responses gathered in
/// `out`, then the tagged result — `OK text` (with `ok_code`), `NO [EXPUNGEISSUED]` when
/// some named messages were expunged meanwhile, `NO` for a spool failure, or `BYE` when the
/// mailbox's UIDVALIDITY changed.
pub fn finish(
    tag: &Tag<'_>,
    mut out: Vec<Response<'static>>,
    result: Result<(), CmdError>,
    missing: bool,
    ok_code: Option<Code<'static>>,
    text: &str,
) -> Reply {
    match result {
        Err(CmdError::ValidityChanged) => return validity_changed(),
        Err(CmdError::Storage(e)) => out.push(storage_no(tag, &e)),
        Ok(()) if missing => out.push(status(
            Some(tag),
            Kind::No,
            Some(code("EXPUNGEISSUED")),
            "Some messages were expunged meanwhile",
        )),
        Ok(()) => out.push(status(Some(tag), Kind::Ok, ok_code, text)),
    }
    Reply {
        raw: Vec::new(),
        responses: out,
        close: false,
    }
}

/// An IMAP string for our own texts (ID, NAMESPACE).
pub fn istr(s: &str) -> IString<'static> {
    IString::try_from(s.to_string()).unwrap_or_else(|_| {
        IString::Literal(imap_types::core::Literal::unvalidated(
            s.as_bytes().to_vec(),
        ))
    })
}
