//! Placeholder for RFC 1996 NOTIFY (being written on branch wt-dns); same interface.

#[derive(Debug, Clone)]
pub struct NotifyResult {
    pub target: std::net::SocketAddr,
    pub zone: String,
    pub ok: bool,
    pub detail: String,
}

pub async fn notify(
    targets: &[std::net::SocketAddr],
    zones: &[String],
    _serial: u32,
) -> Vec<NotifyResult> {
    let mut out = Vec::new();
    for t in targets {
        for z in zones {
            out.push(NotifyResult {
                target: *t,
                zone: z.clone(),
                ok: false,
                detail: "not implemented".into(),
            });
        }
    }
    out
}
