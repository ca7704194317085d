//! Config values that parse themselves when the file is read: sizes, the broker URL, secrets.

use super::*;

/// A size written as `"512MiB"`, `"1GB"`, `"4096"` (bytes) or a bare integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let not_a_size = || format!("`{s}` is not a size like \"512MiB\"");
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1 << 10,
            "m" | "mb" => 1000 * 1000,
            "mib" => 1 << 20,
            "g" | "gb" => 1000 * 1000 * 1000,
            "gib" => 1 << 30,
            other => {
                return Err(format!(
                    "`{other}` is not a size unit (B, KiB, MiB, GiB, kB, MB, GB)"
                ))
            }
        };
        let too_large = || format!("`{s}` is too large");
        // Whole numbers in checked integer arithmetic: `as` on a float would saturate
        // "99999999999999999999GiB" into 16 EiB without a word.
        if !num.contains('.') {
            let n: u64 = num
                .parse()
                .map_err(|e: std::num::ParseIntError| match e.kind() {
                    std::num::IntErrorKind::PosOverflow => too_large(),
                    _ => not_a_size(),
                })?;
            return n.checked_mul(mult).map(ByteSize).ok_or_else(too_large);
        }
        let value: f64 = num.parse().map_err(|_| not_a_size())?;
        let bytes = value * mult as f64;
        // 2^64 is exact as a float; every finite float below it converts without loss of range.
        if !bytes.is_finite() || bytes >= 18_446_744_073_709_551_616.0 {
            return Err(too_large());
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if n >= 1 << shift && n % (1 << shift) == 0 {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}B")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// `mqtt.url` as written (for messages) and as the program uses it, checked once when the config
/// is read: nothing parses the text again.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct BrokerUrl {
    text: String,
    addr: BrokerAddr,
}

impl BrokerUrl {
    pub fn addr(&self) -> &BrokerAddr {
        &self.addr
    }
}

impl TryFrom<String> for BrokerUrl {
    type Error = String;
    fn try_from(text: String) -> Result<BrokerUrl, String> {
        let addr = BrokerAddr::parse(&text)?;
        Ok(BrokerUrl { text, addr })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl BrokerAddr {
    pub fn parse(url: &str) -> Result<BrokerAddr, String> {
        let (tls, rest) = if let Some(r) = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
        {
            (false, r)
        } else if let Some(r) = url
            .strip_prefix("mqtts://")
            .or_else(|| url.strip_prefix("ssl://"))
        {
            (true, r)
        } else {
            return Err(format!(
                "`{url}` must start with mqtt:// or mqtts:// (or their old names tcp:// and ssl://)"
            ));
        };
        let rest = rest.trim_end_matches('/');
        if let Some((_, after)) = rest.rsplit_once('@') {
            // Never the login itself: this message reaches logs and terminals.
            let scheme = &url[..url.len() - rest.len()];
            return Err(format!(
                "`{scheme}…@{after}`: give the login in mqtt.username and mqtt.password (or password_file), not in the URL"
            ));
        }
        if rest.contains('/') {
            return Err(format!("`{url}`: give only host and port, no path"));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{url}`: unclosed [ in IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p
                    .parse()
                    .map_err(|_| format!("`{url}`: `{p}` is not a port"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("`{url}`: unexpected `{after}`")),
            };
            (h.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse()
                        .map_err(|_| format!("`{url}`: `{p}` is not a port"))?,
                ),
                None => (rest.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        Ok(BrokerAddr { host, port, tls })
    }
}
