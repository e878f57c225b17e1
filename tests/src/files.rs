//! The lab's files: `hamail.toml`, a CA and a server certificate for every host name and
//! address, the passwd-file with demo users (random passwords, `{SSHA}` hashes), aliases,
//! and the spool and log directories.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::{DnsInfo, HostInfo, LabInfo, Options, User, DNS_PORT, DOMAIN, PORTS};

fn password() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(12)
        .collect()
}

/// `{SSHA}` (SHA-1 of password ‖ salt, then the salt): a real hash, so the lab's
/// passwd-file looks like a real one, without a crypt dependency here.
fn ssha(password: &str) -> String {
    let salt: [u8; 8] = std::array::from_fn(|_| fastrand::u8(..));
    let mut h = Sha1::new();
    h.update(password.as_bytes());
    h.update(salt);
    let mut raw = h.finalize().to_vec();
    raw.extend_from_slice(&salt);
    format!(
        "{{SSHA}}{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn host_ip(base: Ipv4Addr, i: usize) -> anyhow::Result<IpAddr> {
    let [a, b, c, d] = base.octets();
    let d = u8::try_from(usize::from(d) + 1 + i).context("too many hosts for the base address")?;
    Ok(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

/// Write every file and return the lab description (no pids yet).
pub fn write_all(dir: &Path, opts: &Options) -> anyhow::Result<LabInfo> {
    for sub in ["spool", "logs", "tls", "dnsctl"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let hosts: Vec<HostInfo> = (0..opts.hosts)
        .map(|i| {
            Ok(HostInfo {
                name: format!("host{}", i + 1),
                address: host_ip(opts.base, i)?,
                pid: None,
                mx_priority: u16::try_from((i + 1) * 10)?,
                ports: PORTS,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let users: Vec<User> = ["alice", "bob"]
        .iter()
        .map(|u| User {
            login: u.to_string(),
            password: password(),
            address: format!("{u}@{DOMAIN}"),
        })
        .collect();
    let passwd: String = users
        .iter()
        .map(|u| {
            format!(
                "{}:{}:1000:1000::/home/{}:/bin/false\n",
                u.login,
                ssha(&u.password),
                u.login
            )
        })
        .collect();
    std::fs::write(dir.join("passwd"), passwd)?;
    std::fs::write(dir.join("aliases"), "postmaster: alice\ninfo: alice, bob\n")?;
    certificates(dir, &hosts, opts.base)?;

    let installed = opts.install_dir.as_deref().unwrap_or(dir);
    let spool = opts
        .spool
        .clone()
        .unwrap_or_else(|| installed.join("spool"));
    let d = installed.display();
    let mut config = format!(
        r#"# Written by hamail-lab; every host uses the same ports on its own address.
[cluster]
domains = ["{DOMAIN}"]
spool = "{spool}"

[auth]
backend = "file"
passwd_file = "{d}/passwd"
aliases_file = "{d}/aliases"

[tls]
cert = "{d}/tls/cert.pem"
key = "{d}/tls/key.pem"
allow_plaintext_auth = true       # the lab only

[listeners]
smtp = {smtp}
submission = {submission}
submissions = {smtps}
imap = {imap}
imaps = {imaps}
pop3 = {pop3}
pop3s = {pop3s}
health = {health}

[locking]
timeout_secs = 10
stale_after_secs = 30

[queue]                           # deliveries deferred by a lock retry soon in the lab
retry_min_secs = 5
retry_max_secs = 60

[health]
interval_secs = 1
fail_after = 3
recover_after = 3

[dns]
listen = "{base}:{DNS_PORT}"
ttl_secs = 5
state_dir = "{d}/dnsctl"
control_socket = "{d}/dnsctl/dnsctl.sock"
probe_timeout_ms = 500
"#,
        smtp = PORTS.smtp,
        submission = PORTS.submission,
        smtps = PORTS.smtps,
        imap = PORTS.imap,
        imaps = PORTS.imaps,
        pop3 = PORTS.pop3,
        pop3s = PORTS.pop3s,
        health = PORTS.health,
        base = opts.base,
        spool = spool.display(),
    );
    for h in &hosts {
        config.push_str(&format!(
            "\n[[host]]\nname = \"{}\"\naddress = \"{}\"\nmx_priority = {}\n",
            h.name, h.address, h.mx_priority
        ));
    }
    let config_path = dir.join("hamail.toml");
    std::fs::write(&config_path, config)?;
    // The agents and dnsctl parse it the same way; fail here, with the reason, if not.
    hamail_storage::cluster::ClusterConfig::load(&config_path)?;
    let info_dir = installed.to_path_buf();
    Ok(LabInfo {
        domain: DOMAIN.to_string(),
        config: info_dir.join("hamail.toml"),
        spool,
        ca_cert: info_dir.join("ca.pem"),
        dir: info_dir,
        dns: DnsInfo {
            address: IpAddr::V4(opts.base),
            port: DNS_PORT,
            pid: None,
        },
        hosts,
        users,
    })
}

/// A lab CA, and one server certificate (signed by it) naming every host, `mail.` and
/// `localhost`, by name and address.
fn certificates(dir: &Path, hosts: &[HostInfo], base: Ipv4Addr) -> anyhow::Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "hamail lab CA");
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let mut names = vec!["localhost".to_string(), format!("mail.{DOMAIN}")];
    names.extend(hosts.iter().map(|h| format!("{}.{DOMAIN}", h.name)));
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("mail.{DOMAIN}"));
    for h in hosts {
        params.subject_alt_names.push(SanType::IpAddress(h.address));
    }
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(base)));
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    std::fs::write(dir.join("tls/cert.pem"), cert.pem() + &ca_cert.pem())?;
    std::fs::write(dir.join("tls/key.pem"), key.serialize_pem())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `examples/config/lab.toml` is what `hamail-lab config --base 10.0.0.10
    /// --install-dir /etc/hamail --spool /srv/mail` writes (the VM lab's three guests):
    /// the example stays true to the lab, and a change to the lab's config shows up in
    /// the diff of that file.
    #[test]
    fn the_lab_example_config_is_what_the_lab_writes() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            dir: dir.path().to_path_buf(),
            hosts: 3,
            base: Ipv4Addr::new(10, 0, 0, 10),
            install_dir: Some("/etc/hamail".into()),
            spool: Some("/srv/mail".into()),
        };
        let info = write_all(dir.path(), &opts).unwrap();
        assert_eq!(info.config, Path::new("/etc/hamail/hamail.toml"));
        let written = std::fs::read_to_string(dir.path().join("hamail.toml")).unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/config/lab.toml");
        let expected = std::fs::read_to_string(&example).unwrap();
        assert!(
            written == expected,
            "{} differs from what hamail-lab writes now; if the change is meant, \
             copy this over it:\n{written}",
            example.display()
        );
    }
}
