//! Loading: the file read and parsed, then validated, then its secrets and TLS files read.

use super::*;

impl Config {
    /// Parse, validate and resolve secrets. Every error names the file and the key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.into(),
            message,
        })?;
        config.path = Some(path.into());
        let mut problems = config.validate();
        if problems.is_empty() {
            problems = config.resolve_secrets();
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.into(),
                problems,
            })
        }
    }

    /// TOML to structure; unknown keys and wrong types are errors with line and key.
    pub fn parse(text: &str) -> Result<Config, String> {
        let mut config: Config = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let client_id = &mut config.mqtt.client_id;
        client_id.get_or_insert_with(|| format!("face2mqtt-{}", hostname()));
        Ok(config)
    }

    /// Reads `password_file`s (systemd credentials, say) and the TLS files into the config.
    pub(super) fn resolve_secrets(&mut self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(path) = &self.mqtt.password_file {
            match read_secret(path) {
                Ok(s) => self.mqtt.password = Some(s),
                Err(e) => p.push(format!("mqtt.password_file: {e}")),
            }
        }
        p.extend(self.mqtt.read_tls_files());
        for (i, t) in self.terminals.iter_mut().enumerate() {
            if let Some(path) = &t.password_file {
                match read_secret(path) {
                    Ok(s) => t.password = Some(s),
                    Err(e) => p.push(format!("terminal[{i}] ({}).password_file: {e}", t.id)),
                }
            }
        }
        p
    }

    pub fn terminal(&self, id: &str) -> Option<&TerminalConfig> {
        self.terminals.iter().find(|t| t.id == id)
    }
}

impl MqttConfig {
    /// TLS keys that cannot work together or with the URL.
    pub(super) fn tls_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(_), None) => p.push(
                "mqtt.client_key_file: client_cert_file needs its key: give client_key_file too"
                    .into(),
            ),
            (None, Some(_)) => p.push(
                "mqtt.client_cert_file: client_key_file needs its certificate: give client_cert_file too"
                    .into(),
            ),
            _ => {}
        }
        match self.url.addr() {
            BrokerAddr { tls: false, .. } => {
                let given = [
                    ("ca_file", &self.ca_file),
                    ("client_cert_file", &self.client_cert_file),
                    ("client_key_file", &self.client_key_file),
                ];
                for (key, _) in given.iter().filter(|(_, v)| v.is_some()) {
                    p.push(format!(
                        "mqtt.{key}: TLS files need a TLS connection: use mqtts:// in mqtt.url"
                    ));
                }
                if self.server_cert_sha256.is_some() {
                    p.push("mqtt.server_cert_sha256: a pin needs a TLS connection: use mqtts:// in mqtt.url".into());
                }
            }
            // The name the broker's certificate is checked against: a DNS name or an address.
            BrokerAddr {
                tls: true, host, ..
            } => {
                if rustls::pki_types::ServerName::try_from(host.as_str()).is_err() {
                    p.push(format!(
                        "mqtt.url: `{host}` is neither a DNS name nor an IP address, so the broker's certificate cannot be checked against it"
                    ));
                }
            }
        }
        p
    }

    /// Reads `ca_file`, `client_cert_file` and `client_key_file` into `tls`.
    pub(super) fn read_tls_files(&mut self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(pin) = &self.server_cert_sha256 {
            match pem::sha256_pin(pin) {
                Ok(pin) => self.tls.pin = Some(pin),
                Err(e) => p.push(format!("mqtt.server_cert_sha256: {e}")),
            }
        }
        if let Some(path) = &self.ca_file {
            match pem::ca_bundle(path) {
                Ok(store) => self.tls.ca = Some(store),
                Err(e) => p.push(format!("mqtt.ca_file: {e}")),
            }
        }
        if let (Some(cert), Some(key)) = (&self.client_cert_file, &self.client_key_file) {
            let chain = pem::certificates(cert).map_err(|e| format!("mqtt.client_cert_file: {e}"));
            let der = pem::private_key(key).map_err(|e| format!("mqtt.client_key_file: {e}"));
            match (chain, der) {
                (Ok(chain), Ok(der)) => match pem::client_identity(chain, der, cert, key) {
                    Ok(id) => self.tls.client = Some(id),
                    Err(e @ pem::PemError::BadCertificate { .. }) => {
                        p.push(format!("mqtt.client_cert_file: {e}"))
                    }
                    Err(e) => p.push(format!("mqtt.client_key_file: {e}")),
                },
                (chain, der) => p.extend(chain.err().into_iter().chain(der.err())),
            }
        }
        p
    }
}

/// Reads a password file: its first 64 KiB at most (a password is short; `/dev/zero` is not a
/// password), without one trailing newline (LF or CRLF).
pub(crate) fn read_secret(path: &Path) -> Result<Secret, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(64 << 10).read_to_string(&mut text))
        .map_err(|e| {
        match credential_source(path) {
            Some(name) if e.kind() == std::io::ErrorKind::NotFound => format!(
                "cannot read {}: this path exists only while systemd runs the service (the credential `{name}` that LoadCredential= in its unit provides), so no shell can read it. To check the config now, check a copy whose password_file names the file LoadCredential= reads (e.g. /etc/face2mqtt/{name}.password), or start the service and read `journalctl -u face2mqtt`",
                path.display()
            ),
            _ => format!("cannot read {}: {e}", path.display()),
        }
    })?;
    // One trailing newline is how editors and `echo` leave it; it is not part of the password.
    let value = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret::new(value))
}

/// The credential's name when `path` is where systemd puts a service's credentials
/// (`/run/credentials/<unit>/<name>`), which exist only while that unit runs.
pub(super) fn credential_source(path: &Path) -> Option<String> {
    let rest = path.strip_prefix("/run/credentials").ok()?;
    let mut parts = rest.components();
    let (_unit, name) = (parts.next()?, parts.next()?);
    parts
        .next()
        .is_none()
        .then(|| name.as_os_str().to_string_lossy().into_owned())
}
