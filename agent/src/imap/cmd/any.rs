//! The commands valid in any state (RFC 3501 §6.1: CAPABILITY, NOOP, LOGOUT; RFC 2971 ID),
//! NAMESPACE (RFC 2342), and the poll that NOOP, CHECK, IDLE and the commands that change
//! a mailbox end with.

use imap_types::core::{NString, Tag};
use imap_types::extensions::namespace::Namespace;
use imap_types::response::{Data, Response};

use crate::imap::reply::{bye, istr, status, validity_changed, CmdError, Kind, Reply};
use crate::imap::session::{Session, State};
use crate::imap::view::Expunges;

impl Session {
    pub(super) fn capability(&self, tag: &Tag<'_>) -> Reply {
        Reply {
            raw: Vec::new(),
            responses: vec![
                Response::Data(Data::Capability(self.capabilities())),
                status(Some(tag), Kind::Ok, None, "CAPABILITY completed"),
            ],
            close: false,
        }
    }

    pub(super) fn logout(&mut self, tag: &Tag<'_>) -> Reply {
        self.state = State::Logout;
        Reply {
            raw: Vec::new(),
            responses: vec![
                bye("Logging out"),
                status(Some(tag), Kind::Ok, None, "LOGOUT completed"),
            ],
            close: true,
        }
    }

    pub(super) fn id(&self, tag: &Tag<'_>) -> Reply {
        Reply {
            raw: Vec::new(),
            responses: vec![
                Response::Data(Data::Id {
                    parameters: Some(vec![
                        (istr("name"), NString(Some(istr("hamail")))),
                        (
                            istr("version"),
                            NString(Some(istr(env!("CARGO_PKG_VERSION")))),
                        ),
                    ]),
                }),
                status(Some(tag), Kind::Ok, None, "ID completed"),
            ],
            close: false,
        }
    }

    /// One personal namespace, `""` with `/` as the delimiter.
    pub(super) fn namespace(&self, tag: &Tag<'_>) -> Reply {
        Reply {
            raw: Vec::new(),
            responses: vec![
                Response::Data(Data::Namespace {
                    personal: vec![Namespace {
                        prefix: istr(""),
                        delimiter: imap_types::core::QuotedChar::try_from('/').ok(),
                        extensions: Vec::new(),
                    }],
                    other: Vec::new(),
                    shared: Vec::new(),
                }),
                status(Some(tag), Kind::Ok, None, "NAMESPACE completed"),
            ],
            close: false,
        }
    }

    /// NOOP and CHECK: bring the selected view up to date.
    pub(super) fn noop(&mut self, tag: &Tag<'_>) -> Reply {
        let mut reply = self.poll();
        reply
            .responses
            .push(status(Some(tag), Kind::Ok, None, "Completed"));
        reply
    }

    /// Untagged updates only (NOOP, IDLE's polls, after APPEND and COPY).
    pub(in crate::imap) fn poll(&mut self) -> Reply {
        let mut out = Vec::new();
        let State::Selected(view) = &mut self.state else {
            return Reply::default();
        };
        let synced = view
            .read()
            .and_then(|rs| Ok(view.sync(rs.index(), Expunges::Announce, &mut out)?));
        match synced {
            Ok(()) => {}
            Err(CmdError::ValidityChanged) => return validity_changed(),
            Err(CmdError::Storage(e)) => tracing::warn!(error = %e, "poll failed"),
        }
        Reply {
            raw: Vec::new(),
            responses: out,
            close: false,
        }
    }

    /// After APPEND/COPY into possibly the selected mailbox: report what is new.
    pub(super) fn after_change(&mut self) -> Reply {
        if self.is_selected() {
            self.poll()
        } else {
            Reply::default()
        }
    }
}
