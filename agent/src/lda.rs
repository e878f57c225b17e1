//! `hamail-agent deliver USER... < message`: local delivery agent, usable as Postfix's
//! `mailbox_command` or like procmail. Exit codes follow sysexits(3), which Postfix and
//! sendmail understand: 0 delivered, 67 unknown user (bounce), 75 temporary (retry later),
//! 65 bad input, 78 configuration error.

use std::io::Read;

use hamail_storage::cluster::ClusterConfig;
use hamail_storage::Spool;

pub const EX_OK: i32 = 0;
pub const EX_USAGE: i32 = 64;
pub const EX_DATAERR: i32 = 65;
pub const EX_NOUSER: i32 = 67;
pub const EX_TEMPFAIL: i32 = 75;
pub const EX_CONFIG: i32 = 78;

/// Deliver standard input to `users`; returns the exit code.
pub fn main(config: &ClusterConfig, host: &str, sender: &str, users: &[String]) -> i32 {
    if users.is_empty() {
        eprintln!("hamail-agent deliver: name at least one user");
        return EX_USAGE;
    }
    let Ok(host) = config.host(host) else {
        eprintln!("hamail-agent deliver: no host {host:?} in the config");
        return EX_CONFIG;
    };
    let mut raw = Vec::new();
    let limit = config.limits.max_message_size;
    if let Err(e) = std::io::stdin().take(limit + 1).read_to_end(&mut raw) {
        eprintln!("hamail-agent deliver: reading the message: {e}");
        return EX_TEMPFAIL;
    }
    if raw.len() as u64 > limit {
        eprintln!("hamail-agent deliver: message larger than {limit} bytes");
        return EX_DATAERR;
    }
    let data = crate::delivery::strip_internal_headers(&prepare(&raw));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hamail-agent deliver: {e}");
            return EX_TEMPFAIL;
        }
    };
    let directory = match crate::auth::from_config(config) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("hamail-agent deliver: {e}");
            return EX_CONFIG;
        }
    };
    for user in users {
        match runtime.block_on(directory.backend().user_exists(user)) {
            Ok(true) => {}
            Ok(false) => {
                eprintln!("hamail-agent deliver: {user}: no such user");
                return EX_NOUSER;
            }
            Err(e) => {
                eprintln!("hamail-agent deliver: {user}: {e}");
                return EX_TEMPFAIL;
            }
        }
    }
    let spool = match Spool::open(&config.cluster.spool, config.lock_options(host)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hamail-agent deliver: {e}");
            return EX_TEMPFAIL;
        }
    };
    let queue_id = hamail_storage::queue::new_id();
    let results = crate::delivery::deliver_local(&spool, &queue_id, sender, users, &data);
    let mut code = EX_OK;
    for (user, result) in users.iter().zip(results) {
        match result {
            Ok(_) => {
                tracing::info!(queue_id = %queue_id, user = %user, size = data.len(), "delivered")
            }
            Err(e) => {
                eprintln!("hamail-agent deliver: {user}: {e}");
                code = if e.is_temporary() {
                    EX_TEMPFAIL
                } else {
                    EX_DATAERR
                };
            }
        }
    }
    code
}

/// Spool form ([`hamail_storage::wire::to_spool`]: CRLF becomes LF), ending in LF, and no
/// leading mbox `From ` line (procmail-style callers pass one; the spool writes its own).
fn prepare(raw: &[u8]) -> Vec<u8> {
    let body = if raw.starts_with(b"From ") {
        memchr::memchr(b'\n', raw).map_or(&raw[raw.len()..], |i| &raw[i + 1..])
    } else {
        raw
    };
    let mut out = hamail_storage::wire::to_spool(body);
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::prepare;

    #[test]
    fn from_line_dropped_crlf_normalised() {
        assert_eq!(
            prepare(b"From x@y Mon\nA: b\r\n\r\nbody"),
            b"A: b\n\nbody\n"
        );
        assert_eq!(prepare(b"A: b\n\nFrom here\n"), b"A: b\n\nFrom here\n");
    }
}
