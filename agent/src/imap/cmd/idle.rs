//! IDLE (RFC 2177): report changes as they happen, polling the spool every
//! `idle_poll`, until DONE, the autologout timer or shutdown.

use imap_codec::IdleDoneCodec;
use imap_types::core::Tag;

use crate::conn::ReadError;
use crate::imap::framing::Event;
use crate::imap::reply::{status, Kind};
use crate::imap::server::Loop;
use crate::imap::session::State;

impl Loop {
    /// RFC 2177: report changes as they happen (polling the spool) until DONE.
    pub(super) async fn idle(&mut self, tag: &Tag<'static>) -> Result<bool, ReadError> {
        if !self.session()?.is_selected()
            && matches!(self.session()?.state, State::NotAuthenticated)
        {
            self.send(&status(Some(tag), Kind::Bad, None, "Log in first"));
            return Ok(true);
        }
        self.conn.queue(b"+ idling\r\n");
        self.conn.flush().await?;
        let mut tick = tokio::time::interval(self.ctx.idle_poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = tokio::time::Instant::now() + self.ctx.idle_timeout;
        loop {
            // DONE may already be buffered.
            loop {
                match self.framer.next(true) {
                    Event::NeedMore => break,
                    Event::Message => {
                        let done = self.framer.decode(&IdleDoneCodec::default()).is_ok();
                        if done {
                            self.send(&status(Some(tag), Kind::Ok, None, "IDLE terminated"));
                        } else {
                            self.send(&status(Some(tag), Kind::Bad, None, "Expected DONE"));
                        }
                        return Ok(true);
                    }
                    other => {
                        if !self.act(other).await? {
                            return Ok(false);
                        }
                    }
                }
            }
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                r = self.conn.read_chunk(self.ctx.idle_timeout) => {
                    match r {
                        Ok(bytes) => {
                            if !self.enqueue(&bytes) {
                                return Ok(false);
                            }
                        }
                        Err(ReadError::Timeout) => {
                            self.conn.queue(b"* BYE Autologout; idle for too long\r\n");
                            return Ok(false);
                        }
                        Err(e) => return Err(e),
                    }
                }
                _ = tick.tick() => {
                    if tokio::time::Instant::now() > deadline {
                        self.conn.queue(b"* BYE Autologout; idle for too long\r\n");
                        return Ok(false);
                    }
                    let Some(reply) = self.with_session(|s| s.poll()).await? else {
                        return Ok(false);
                    };
                    self.send_all(&reply);
                    self.conn.flush().await?;
                    if reply.close {
                        return Ok(false);
                    }
                }
                _ = shutdown.wait() => {
                    self.conn.queue(b"* BYE Server shutting down, reconnect later\r\n");
                    return Ok(false);
                }
            }
        }
    }
}
