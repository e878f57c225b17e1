//! TEMPORARY stub (replaced on merge).
use hamail_storage::Flags;
use imap_types::search::SearchKey;

pub struct Candidate<'m> {
    pub seq: u32,
    pub uid: u32,
    pub flags: Flags,
    pub keywords: Vec<&'m str>,
    pub recent: bool,
    pub internal_date: i64,
    pub size: u64,
}
pub trait Loader {
    fn message(&mut self, uid: u32) -> Option<Vec<u8>>;
}
pub struct Context {
    pub max_seq: u32,
    pub max_uid: u32,
}
pub fn search(
    _keys: &[SearchKey<'_>],
    cands: &[Candidate<'_>],
    _ctx: &Context,
    _loader: &mut dyn Loader,
) -> Vec<usize> {
    (0..cands.len()).collect()
}
