//! TEMPORARY stub (replaced on merge).
use imap_types::body::BodyStructure;
use imap_types::envelope::Envelope;
use imap_types::fetch::Section;

pub fn envelope(_msg: &[u8]) -> Envelope<'static> {
    unimplemented!()
}
pub fn body_structure(_msg: &[u8], _extended: bool) -> BodyStructure<'static> {
    unimplemented!()
}
pub fn section(msg: &[u8], _section: Option<&Section<'_>>) -> Option<Vec<u8>> {
    Some(msg.to_vec())
}
pub fn partial(data: &[u8], start: u32, len: u32) -> &[u8] {
    let s = (start as usize).min(data.len());
    let e = s.saturating_add(len as usize).min(data.len());
    &data[s..e]
}
