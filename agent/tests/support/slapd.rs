//! A real OpenLDAP `slapd` for the directory tests: its own slapd.conf, mdb database,
//! CA-signed TLS certificate (StartTLS and ldaps://), pid file and log, on a loopback
//! address of its own. Users are loaded with `slapadd` before the server starts.
//!
//! Entries: the service account `cn=hamail,dc=lab,dc=test` (the only identity allowed to
//! search), `alice` (`{SSHA}`, also `a.smith@example.test` as `mailLocalAddress`), `bob`
//! (`{CRYPT}$6$`), and `dup1`/`dup2` sharing `shared@example.test`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{fresh_ip, wait_for};

pub const BASE: &str = "ou=people,dc=lab,dc=test";
pub const SERVICE_DN: &str = "cn=hamail,dc=lab,dc=test";
pub const SERVICE_PW: &str = "service-secret";
pub const LDAP_PORT: u16 = 3389;
pub const LDAPS_PORT: u16 = 3636;

pub struct Slapd {
    pub dir: tempfile::TempDir,
    pub ip: IpAddr,
    /// PEM of the CA that signed the server certificate (for `ca_file`).
    pub ca_file: PathBuf,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Slapd {
    /// Configure, load and start a server.
    pub fn start() -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let ip = IpAddr::V4(fresh_ip());
        std::fs::create_dir(root.join("db")).unwrap();

        // A CA and a server certificate for the loopback address.
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hamail test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.subject_alt_names.push(SanType::IpAddress(ip));
        let cert = params.signed_by(&key, &issuer).unwrap();
        let ca_file = root.join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        std::fs::write(root.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(root.join("server.key"), key.serialize_pem()).unwrap();

        let hash = |pw: &str| run(Command::new("slappasswd").args(["-s", pw]));
        let crypt6 = |pw: &str| {
            run(Command::new("openssl").args(["passwd", "-6", "-salt", "hamailsalt", pw]))
        };
        let root_s = root.display();
        let conf = format!(
            r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/misc.schema
pidfile {root_s}/slapd.pid
argsfile {root_s}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile {root_s}/ca.pem
TLSCertificateFile {root_s}/server.pem
TLSCertificateKeyFile {root_s}/server.key
database mdb
suffix "dc=lab,dc=test"
rootdn "cn=admin,dc=lab,dc=test"
rootpw {admin}
directory {root_s}/db
maxsize 10485760
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by dn.exact="{SERVICE_DN}" read
  by self read
  by * none
"#,
            admin = hash("admin-secret"),
        );
        std::fs::write(root.join("slapd.conf"), conf).unwrap();
        let person = |uid: &str, n: u32, mail: &str, extra: &str, password: &str| {
            format!(
                "dn: uid={uid},{BASE}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n\
                 objectClass: inetLocalMailRecipient\nuid: {uid}\ncn: {uid}\nsn: Test\n\
                 mail: {mail}\n{extra}uidNumber: {n}\ngidNumber: 5000\n\
                 homeDirectory: /home/{uid}\nuserPassword: {password}\n\n"
            )
        };
        let mut ldif = format!(
            "dn: dc=lab,dc=test\nobjectClass: dcObject\nobjectClass: organization\no: lab\ndc: lab\n\n\
             dn: {BASE}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
             cn: hamail\nuserPassword: {}\n\n",
            hash(SERVICE_PW)
        );
        ldif += &person(
            "alice",
            5001,
            "alice@example.test",
            "mailLocalAddress: a.smith@example.test\n",
            &hash("alice-ldap-pw"),
        );
        ldif += &person(
            "bob",
            5002,
            "bob@example.test",
            "",
            &format!("{{CRYPT}}{}", crypt6("bob-ldap-pw")),
        );
        ldif += &person("dup1", 5003, "shared@example.test", "", &hash("dup-pw"));
        ldif += &person("dup2", 5004, "shared@example.test", "", &hash("dup-pw"));
        std::fs::write(root.join("data.ldif"), ldif).unwrap();
        run(Command::new("slapadd")
            .arg("-q")
            .arg("-f")
            .arg(root.join("slapd.conf"))
            .arg("-l")
            .arg(root.join("data.ldif")));
        let slapd = Slapd { dir, ip, ca_file };
        slapd.resume();
        slapd
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn ldap_url(&self) -> String {
        format!("ldap://{}:{LDAP_PORT}", self.ip)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://{}:{LDAPS_PORT}", self.ip)
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.root().join("slapd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Start (again) on the same database; returns once both ports accept connections.
    pub fn resume(&self) {
        let urls = format!("{} {}/", self.ldap_url(), self.ldaps_url());
        run(Command::new("slapd")
            .arg("-h")
            .arg(urls)
            .arg("-f")
            .arg(self.root().join("slapd.conf")));
        let up = wait_for(Duration::from_secs(20), || {
            [LDAP_PORT, LDAPS_PORT].iter().all(|p| {
                std::net::TcpStream::connect_timeout(
                    &SocketAddr::new(self.ip, *p),
                    Duration::from_millis(200),
                )
                .is_ok()
            })
        });
        assert!(up, "slapd did not start");
    }

    /// Stop the server (SIGTERM by pid) and wait until it is gone.
    pub fn stop(&self) {
        let Some(pid) = self.pid() else { return };
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let gone = wait_for(Duration::from_secs(20), || unsafe {
            libc::kill(pid, 0) != 0
        });
        if !gone {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_file(self.root().join("slapd.pid"));
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
