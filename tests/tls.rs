//! mqtts:// end to end: the bridge binary against a real Mosquitto with a TLS listener, with
//! certificates generated for each test run (nothing checked in that could expire). The test's
//! own subscriber stays on the broker's plain listener.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::*;
use face2mqtt::integrations::terminal::PersonType;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority of the test, and what it signs.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, PEM.
struct Issued {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    fn issue(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose, expired: bool) -> Issued {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "face2mqtt test");
        params.extended_key_usages = vec![purpose];
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signed");
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A broker certificate for 127.0.0.1 (an IP address subjectAltName), where tests connect.
    fn server(&self) -> Issued {
        self.issue(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    fn client(&self) -> Issued {
        self.issue(&[], ExtendedKeyUsagePurpose::ClientAuth, false)
    }
}

fn broker_tls(ca: &Ca, server: &Issued) -> BrokerTls {
    BrokerTls {
        ca_pem: ca.pem(),
        cert_pem: server.cert.clone(),
        key_pem: server.key.clone(),
        ..BrokerTls::default()
    }
}

/// The bridge's TLS files in a directory of their own, and the `[mqtt]` keys that name them.
struct BridgeFiles {
    dir: tempfile::TempDir,
    keys: String,
}

impl BridgeFiles {
    fn new() -> BridgeFiles {
        BridgeFiles {
            dir: tempfile::tempdir().expect("tempdir"),
            keys: String::new(),
        }
    }

    fn file(&mut self, key: &str, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write a TLS file");
        self.keys += &format!("{key} = {:?}\n", path.display().to_string());
        path
    }

    fn ca(mut self, ca: &Ca) -> BridgeFiles {
        self.file("ca_file", "ca.pem", &ca.pem());
        self
    }

    fn client(mut self, id: &Issued) -> BridgeFiles {
        self.file("client_cert_file", "client.pem", &id.cert);
        self.file("client_key_file", "client.key", &id.key);
        self
    }

    /// The password in a file, as a systemd credential would hold it.
    fn login(mut self, user: &str, password: &str) -> BridgeFiles {
        self.keys += &format!("username = {user:?}\n");
        self.file("password_file", "mqtt-password", &format!("{password}\n"));
        self
    }
}

fn tls_setup<'a>(broker: &Mosquitto, sim: &'a Sim, files: &'a BridgeFiles) -> BridgeSetup<'a> {
    BridgeSetup {
        scheme: "mqtts",
        extra_mqtt_keys: &files.keys,
        ..BridgeSetup::new(broker.tls_port, &sim.sim, PASSWORD)
    }
}

/// `face2mqtt check` on the setup's config, off the async runtime (it blocks).
async fn check(setup: &BridgeSetup<'_>) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, bridge_config(setup, &dir.path().join("spool"))).expect("config");
    run_check(config, dir).await
}

async fn run_check(config: PathBuf, dir: tempfile::TempDir) -> Output {
    tokio::task::spawn_blocking(move || {
        let o = bridge_command()
            .arg("check")
            .arg("-c")
            .arg(&config)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .output()
            .expect("check runs");
        drop(dir);
        o
    })
    .await
    .expect("joined")
}

fn text(o: &Output) -> String {
    output_text(o)
}

/// `check` fails on the broker alone, in one line: that line.
async fn broker_failure(setup: &BridgeSetup<'_>) -> String {
    let o = check(setup).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("FAILED")).collect();
    assert_eq!(failed.len(), 1, "only the broker fails: {out}");
    assert!(failed[0].starts_with("FAILED  broker mqtts://"), "{out}");
    failed[0].to_string()
}

/// Pushes `n` records and waits until each reached the subscriber.
async fn records_flow(sim: &Sim, sub: &mut Subscriber, bridge: &Bridge, n: usize) {
    let mut pushed = std::collections::BTreeSet::new();
    for _ in 0..n {
        let r = sim.sim.push(Some(PersonType::Staff));
        pushed.insert(format!("front-door-{}-{}", r["signTime"], r["id"]));
    }
    let mut seen = Vec::new();
    collect_records(sub, &mut seen, &pushed, Duration::from_secs(30), bridge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_flow_over_tls_to_a_broker_whose_ca_is_in_ca_file() {
    let ca = Ca::new("site CA");
    let broker = Mosquitto::start_tls(broker_tls(&ca, &ca.server()));
    let sim = default_simulator().await;
    let files = BridgeFiles::new().ca(&ca);
    let setup = tls_setup(&broker, &sim, &files);

    let o = check(&setup).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("ok      broker {}", broker.tls_url())),
        "{}",
        text(&o)
    );

    let mut sub = subscribe(broker.port, "face2mqtt/#").await;
    let bridge = Bridge::start(&setup);
    wait_link(&sim.sim, 1).await;
    records_flow(&sim, &mut sub, &bridge, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_logs_in_to_a_broker_that_requires_one() {
    let ca = Ca::new("site CA");
    let broker = Mosquitto::start_tls(BrokerTls {
        require_certificate: true,
        ..broker_tls(&ca, &ca.server())
    });
    let sim = default_simulator().await;
    let files = BridgeFiles::new().ca(&ca).client(&ca.client());
    let setup = tls_setup(&broker, &sim, &files);

    let o = check(&setup).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let mut sub = subscribe(broker.port, "face2mqtt/#").await;
    let bridge = Bridge::start(&setup);
    wait_link(&sim.sim, 1).await;
    records_flow(&sim, &mut sub, &bridge, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_signed_by_another_ca_is_refused_and_gets_nothing() {
    let ours = Ca::new("our CA");
    let theirs = Ca::new("someone else's CA");
    let broker = Mosquitto::start_tls(broker_tls(&theirs, &theirs.server()));
    let sim = default_simulator().await;
    let files = BridgeFiles::new().ca(&ours);
    let setup = tls_setup(&broker, &sim, &files);

    let line = broker_failure(&setup).await;
    let why =
        "the broker's certificate is not trusted: unknown issuer (no CA in mqtt.ca_file signed it)";
    assert!(line.ends_with(why), "{line}");

    // The daemon says the same, and a record it holds never reaches the broker.
    let mut sub = subscribe(broker.port, "face2mqtt/#").await;
    let bridge = Bridge::start(&setup);
    wait_link(&sim.sim, 1).await;
    let r = sim.sim.push(Some(PersonType::Staff));
    let id = format!("front-door-{}-{}", r["signTime"], r["id"]);
    let refusals = |log: &str| log.lines().filter(|l| l.contains(why)).count();
    eventually(
        "the bridge received the record",
        Duration::from_secs(20),
        || {
            let received = bridge.log_text().contains(&id);
            async move { received }
        },
    )
    .await;
    let before = refusals(&bridge.log_text());
    eventually(
        "another refused connection after the record came in",
        Duration::from_secs(20),
        || {
            let n = refusals(&bridge.log_text());
            async move { n > before }
        },
    )
    .await;
    let mut got = Vec::new();
    while let Ok(m) = sub.rx.try_recv() {
        got.push(m);
    }
    assert!(got.is_empty(), "nothing reaches this broker: {got:?}");
    assert!(acknowledged_event_ids(&bridge.log_text()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused_naming_both_names() {
    let ca = Ca::new("site CA");
    let wrong = ca.issue(
        &["other.example"],
        ExtendedKeyUsagePurpose::ServerAuth,
        false,
    );
    let broker = Mosquitto::start_tls(broker_tls(&ca, &wrong));
    let sim = default_simulator().await;
    let files = BridgeFiles::new().ca(&ca);
    let line = broker_failure(&tls_setup(&broker, &sim, &files)).await;
    assert!(
        line.ends_with(
            "TLS: name mismatch: the broker's certificate is not valid for `127.0.0.1` (the host in mqtt.url); it names other.example"
        ),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_broker_certificate_is_refused_as_expired() {
    let ca = Ca::new("site CA");
    let old = ca.issue(&["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth, true);
    let broker = Mosquitto::start_tls(broker_tls(&ca, &old));
    let sim = default_simulator().await;
    let files = BridgeFiles::new().ca(&ca);
    let line = broker_failure(&tls_setup(&broker, &sim, &files)).await;
    assert!(
        line.ends_with("TLS: the broker's certificate has expired (on 2001-01-01T00:00:00Z)"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_requires_a_client_certificate_says_so_when_none_is_configured() {
    let ca = Ca::new("site CA");
    let broker = Mosquitto::start_tls(BrokerTls {
        require_certificate: true,
        ..broker_tls(&ca, &ca.server())
    });
    let sim = default_simulator().await;
    let files = BridgeFiles::new().ca(&ca);
    let line = broker_failure(&tls_setup(&broker, &sim, &files)).await;
    assert!(
        line.contains("the broker requires a client certificate: give mqtt.client_cert_file and mqtt.client_key_file"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_a_ca_the_broker_does_not_trust_is_refused() {
    let ca = Ca::new("site CA");
    let stranger = Ca::new("another CA");
    let broker = Mosquitto::start_tls(BrokerTls {
        require_certificate: true,
        ..broker_tls(&ca, &ca.server())
    });
    let sim = default_simulator().await;
    let files = BridgeFiles::new().ca(&ca).client(&stranger.client());
    let line = broker_failure(&tls_setup(&broker, &sim, &files)).await;
    assert!(
        line.contains(
            "TLS: the broker refused our client certificate (mqtt.client_cert_file; alert: "
        ),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_and_password_log_in_over_tls_and_the_password_shows_nowhere() {
    let ca = Ca::new("site CA");
    let password = "pw-in-a-credential-7f3a";
    let broker = Mosquitto::start_tls(BrokerTls {
        login: Some(("bridge".into(), password.into())),
        ..broker_tls(&ca, &ca.server())
    });
    let sim = default_simulator().await;

    // The TLS listener takes no anonymous clients, nor a wrong password.
    let anonymous = BridgeFiles::new().ca(&ca);
    let line = broker_failure(&tls_setup(&broker, &sim, &anonymous)).await;
    assert!(line.contains("broker refused"), "{line}");
    let wrong = BridgeFiles::new().ca(&ca).login("bridge", "not-it");
    let line = broker_failure(&tls_setup(&broker, &sim, &wrong)).await;
    assert!(
        line.contains("broker refused") && !line.contains("not-it"),
        "{line}"
    );

    let files = BridgeFiles::new().ca(&ca).login("bridge", password);
    let setup = tls_setup(&broker, &sim, &files);
    let o = check(&setup).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut sub = subscribe(broker.port, "face2mqtt/#").await;
    let bridge = Bridge::start(&setup);
    wait_link(&sim.sim, 1).await;
    records_flow(&sim, &mut sub, &bridge, 5).await;
    assert!(!bridge.log_text().contains(password));
    assert!(!text(&o).contains(password));
}

// ---- config errors: exit 78, the key named ----------------------------------------------------

/// `check` on a config whose `[mqtt]` section ends with `mqtt_keys`: its stderr, after exit 78.
async fn config_error(url: &str, mqtt_keys: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[mqtt]\nurl = \"{url}\"\n{mqtt_keys}\n[spool]\ndir = {:?}\n\n[[terminal]]\nid = \"front-door\"\nhost = \"127.0.0.1\"\npassword = \"x\"\n",
            dir.path().join("spool").display().to_string()
        ),
    )
    .expect("config");
    let o = run_check(config, dir).await;
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn key_line(key: &str, path: &Path) -> String {
    format!("{key} = {:?}\n", path.display().to_string())
}

#[tokio::test]
async fn a_missing_ca_file_is_a_config_error_naming_the_key_and_the_file() {
    let err = config_error(
        "mqtts://broker.example",
        &key_line("ca_file", Path::new("/nonexistent/ca.pem")),
    )
    .await;
    assert!(
        err.contains("mqtt.ca_file: cannot read /nonexistent/ca.pem"),
        "{err}"
    );
}

#[tokio::test]
async fn a_ca_file_that_is_not_pem_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("ca.pem");
    std::fs::write(&garbage, "this is no certificate\n").expect("write");
    let err = config_error("mqtts://broker.example", &key_line("ca_file", &garbage)).await;
    assert!(
        err.contains("mqtt.ca_file: ") && err.contains("holds no certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn a_client_certificate_without_its_key_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = dir.path().join("client.pem");
    std::fs::write(&cert, Ca::new("x").client().cert).expect("write");
    let err = config_error(
        "mqtts://broker.example",
        &key_line("client_cert_file", &cert),
    )
    .await;
    assert!(err.contains("mqtt.client_key_file: "), "{err}");
}

#[tokio::test]
async fn a_client_key_that_is_not_the_certificates_is_a_config_error_that_quotes_no_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("x");
    let (one, other) = (ca.client(), ca.client());
    let (cert, key) = (dir.path().join("client.pem"), dir.path().join("client.key"));
    std::fs::write(&cert, &one.cert).expect("write");
    std::fs::write(&key, &other.key).expect("write");
    let keys = key_line("client_cert_file", &cert) + &key_line("client_key_file", &key);
    let err = config_error("mqtts://broker.example", &keys).await;
    assert!(
        err.contains("mqtt.client_key_file: the key in") && err.contains("does not belong"),
        "{err}"
    );
    let secret = other.key.lines().nth(1).expect("a base64 line");
    assert!(!err.contains(secret));
}

#[tokio::test]
async fn tls_files_with_a_plain_mqtt_url_are_a_config_error_saying_use_mqtts() {
    let err = config_error(
        "mqtt://broker.example",
        &key_line("ca_file", Path::new("/etc/ssl/certs/ca.pem")),
    )
    .await;
    assert!(
        err.contains("mqtt.ca_file: TLS files need a TLS connection: use mqtts://"),
        "{err}"
    );
}

/// Runs `openssl` in `dir`, as an installer following the guide would.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA and a broker certificate for 127.0.0.1 made exactly as Mosquitto's TLS guide makes
/// them (X.509 version 1, the name only in the CN). Returns the CA's PEM, the certificate's,
/// the key's, and the certificate's SHA-256 as openssl prints it.
fn guide_server_certificate(dir: &Path) -> (String, String, String, String) {
    guide_ca(dir);
    guide_signed(dir, "server", "/CN=127.0.0.1");
    let fingerprint = openssl(
        dir,
        &[
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            "server.crt",
        ],
    );
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).expect("read");
    (
        read("ca.crt"),
        read("server.crt"),
        read("server.key"),
        fingerprint.trim().to_string(),
    )
}

/// A Mosquitto serving the guide's version 1 certificate; the bridge trusts the guide's CA.
async fn guide_broker(made: &Path) -> (Mosquitto, String, String) {
    let (ca, cert, key, fingerprint) = guide_server_certificate(made);
    let broker = Mosquitto::start_tls(BrokerTls {
        ca_pem: ca.clone(),
        cert_pem: cert,
        key_pem: key,
        ..BrokerTls::default()
    });
    (broker, ca, fingerprint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_broker_certificate_is_refused_in_one_line_that_says_how_to_reissue_it() {
    let made = tempfile::tempdir().expect("tempdir");
    let (broker, ca, _) = guide_broker(made.path()).await;
    let sim = default_simulator().await;
    let mut files = BridgeFiles::new();
    files.file("ca_file", "ca.pem", &ca);
    let line = broker_failure(&tls_setup(&broker, &sim, &files)).await;
    assert!(line.contains("X.509 version 1"), "{line}");
    assert!(line.contains("openssl x509 -req"), "{line}");
    assert!(line.contains("subjectAltName="), "{line}");
    assert!(line.contains("mqtt.server_cert_sha256"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_version_1_broker_certificate_is_trusted_and_records_flow() {
    let made = tempfile::tempdir().expect("tempdir");
    let (broker, _, fingerprint) = guide_broker(made.path()).await;
    let sim = default_simulator().await;
    // As openssl prints it, `sha256 Fingerprint=AB:CD:...`; no CA file needed.
    let mut files = BridgeFiles::new();
    files.keys += &format!("server_cert_sha256 = {fingerprint:?}\n");
    let setup = tls_setup(&broker, &sim, &files);
    let o = check(&setup).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut sub = subscribe(broker.port, "face2mqtt/#").await;
    let bridge = Bridge::start(&setup);
    wait_link(&sim.sim, 1).await;
    records_flow(&sim, &mut sub, &bridge, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_that_does_not_match_the_broker_is_refused_naming_what_it_found() {
    let made = tempfile::tempdir().expect("tempdir");
    let (broker, _, fingerprint) = guide_broker(made.path()).await;
    let sim = default_simulator().await;
    let mut files = BridgeFiles::new();
    files.keys += &format!("server_cert_sha256 = {:?}\n", "AB".repeat(32));
    let line = broker_failure(&tls_setup(&broker, &sim, &files)).await;
    assert!(line.contains("not the pinned one"), "{line}");
    let found = fingerprint
        .split_once('=')
        .map(|(_, f)| f)
        .unwrap_or_default();
    assert!(line.contains(found), "names the broker's: {line}");
}

/// A CA and a client certificate made exactly as Mosquitto's TLS guide (`man mosquitto-tls`)
/// makes them, with the `openssl` command line: OpenSSL 3's `x509 -req` without an extension
/// file makes X.509 version 1. Returns the CA's PEM, the certificate's and the key's.
fn guide_client_certificate(dir: &Path) -> (String, String, String) {
    guide_ca(dir);
    guide_signed(dir, "client", "/CN=bridge");
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).expect("read");
    (read("ca.crt"), read("client.crt"), read("client.key"))
}

/// The guide's CA: `ca.key` and `ca.crt` in `dir`.
fn guide_ca(dir: &Path) {
    openssl(dir, &["genrsa", "-out", "ca.key", "2048"]);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-days",
            "30",
            "-key",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=guide-ca",
        ],
    );
}

/// `<name>.key` and `<name>.crt` signed by the guide's CA the guide's way (`x509 -req`, no
/// extension file: X.509 version 1).
fn guide_signed(dir: &Path, name: &str, subject: &str) {
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    openssl(dir, &["genrsa", "-out", &key, "2048"]);
    openssl(
        dir,
        &["req", "-out", &csr, "-key", &key, "-new", "-subj", subject],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "30",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_made_by_the_mosquitto_guide_logs_in() {
    let ca = Ca::new("site CA");
    let made = tempfile::tempdir().expect("tempdir");
    let (guide_ca, cert, key) = guide_client_certificate(made.path());
    let broker = Mosquitto::start_tls(BrokerTls {
        // The broker checks clients against the guide's CA.
        ca_pem: guide_ca,
        require_certificate: true,
        ..broker_tls(&ca, &ca.server())
    });
    let sim = default_simulator().await;
    let mut files = BridgeFiles::new().ca(&ca);
    files.file("client_cert_file", "client.pem", &cert);
    files.file("client_key_file", "client.key", &key);
    let setup = tls_setup(&broker, &sim, &files);

    let o = check(&setup).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut sub = subscribe(broker.port, "face2mqtt/#").await;
    let bridge = Bridge::start(&setup);
    wait_link(&sim.sim, 1).await;
    records_flow(&sim, &mut sub, &bridge, 5).await;
}
