//! Checks of single values (ids, hosts, topics, log filters), shared by validation and `setup`.

use super::*;

/// One line: where, the offending line, and what is wrong (toml's own text spans several lines).
pub(super) fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            // Counted on bytes: a span is not promised to fall on a character boundary.
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line_no = before.iter().filter(|b| **b == b'\n').count() + 1;
            let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
            format!("line {line_no} (`{line}`): {message}")
        }
        None => message.to_string(),
    }
}

pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".into())
}

pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The longest duration any setting takes. Durations are added to clocks, doubled by the
/// backoff and counted in nanoseconds; a year's worth never overflows any of that, while
/// humantime happily reads `"500000000y"`.
pub const MAX_DURATION: Duration = Duration::from_secs(400 * 24 * 3600);

/// A `log.level` is a tracing filter: comma-separated directives, each a level (`info`) or
/// `target=level` (`face2mqtt=debug`, `rumqttc::state=warn`). Checked here, strictly, before
/// tracing sees it: tracing's parser reads any word as a target (so `"loud"` would silently log
/// nothing of ours), and it panics on some non-ASCII text (it slices the untrimmed directive at
/// offsets of the trimmed one; found by the `config` fuzz target with `"\u{2005}_f=off"`).
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: &str = "trace, debug, info, warn, error or off";
    let is_level = |l: &str| {
        matches!(
            l.to_ascii_lowercase().as_str(),
            "trace" | "debug" | "info" | "warn" | "error" | "off"
        )
    };
    let is_target = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':' || b == b'-')
    };
    if filter.is_empty() {
        return Err(format!("is empty; give a level: {LEVELS}"));
    }
    for d in filter.split(',') {
        let ok = match d.split_once('=') {
            None => is_level(d),
            Some((target, level)) => is_target(target) && is_level(level),
        };
        if !ok {
            let shown: String = d.chars().take(40).collect();
            return Err(format!(
                "`{}` is not a level ({LEVELS}) or `target=level`",
                shown.escape_debug()
            ));
        }
    }
    // Only ASCII letters, digits and `_:-=,` are left: safe for tracing's parser.
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub(super) fn valid_topic_base(t: &str) -> bool {
    !t.is_empty() && !t.starts_with('/') && !t.ends_with('/') && !t.contains(['+', '#', '\0'])
}

/// A value as an error quotes it: control characters made visible, and cut after 40 characters
/// (a 70,000-character topic must not become a 70,000-character error line).
pub(super) fn shown(value: &str) -> String {
    let cut: String = value.chars().take(40).collect();
    let more = value.chars().nth(40).map_or("", |_| "…");
    format!("{}{more}", cut.escape_debug())
}

/// A topic prefix under `$` is the broker's own space (`$SYS/...`, `$share/<group>/...`): MQTT
/// reserves it, and brokers drop a client's publishes there without an error, so the bridge
/// would look connected while nothing it sends arrives anywhere.
pub(super) fn reserved_topic_problem(key: &str, topic: &str) -> Option<String> {
    topic.starts_with('$').then(|| {
        format!(
            "{key}: `{}` starts with `$`, which brokers reserve for themselves ($SYS, $share/...) and silently drop publishes to; choose a prefix without `$`",
            shown(topic)
        )
    })
}

/// What is wrong with a terminal's `host`, with what to write instead; `None` for a bare host
/// name, IPv4 address or IPv6 address. IPv6 is written without brackets (`fe80::1`): with them
/// the only reason to have brackets is a port, and ports have their own keys.
pub fn host_problem(host: &str) -> Option<String> {
    let ports = "ports have their own keys, http_port and ws_port";
    let instead = |what: &str| {
        let bare = bare_host(host);
        let suggestion = if bare.is_empty() || bare == host {
            String::new()
        } else {
            format!(": write `{}`", shown(&bare))
        };
        Some(format!("`{}` {what}{suggestion}", shown(host)))
    };
    if host.is_empty() {
        return Some("is empty; give the terminal's host name or IP address".into());
    }
    if host.contains(char::is_whitespace) {
        return instead("contains white space");
    }
    if host.contains("://") {
        return instead("has a scheme; give only the host name or address");
    }
    if host.contains('/') {
        return instead("has a path; give only the host name or address");
    }
    if host.contains('@') {
        return instead(
            "has a user name; give only the host name or address (the password has its own key)",
        );
    }
    if host.starts_with('[') {
        let has_port = host
            .split_once(']')
            .is_some_and(|(_, after)| !after.is_empty());
        return if has_port {
            instead(&format!("has a port in it ({ports})"))
        } else {
            instead("is an IPv6 address in brackets; write it without them")
        };
    }
    match host.matches(':').count() {
        0 => {}
        1 => return instead(&format!("has a port in it ({ports})")),
        _ if host.parse::<std::net::Ipv6Addr>().is_ok() => return None,
        _ => return instead("is neither a host name nor an IPv6 address"),
    }
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_';
    if !host.bytes().all(name_byte) {
        return Some(format!(
            "`{}` is not a host name or IP address (letters, digits, `-`, `_` and `.`; IPv6 as `fe80::1`)",
            shown(host)
        ));
    }
    None
}

/// A host written with the extras people paste from a browser, stripped of them: the
/// suggestion in [`host_problem`]'s error.
pub(super) fn bare_host(host: &str) -> String {
    let h = host.trim();
    let h = h.split_once("://").map_or(h, |(_, rest)| rest);
    let h = h.split('/').next().unwrap_or(h);
    let h = h.rsplit_once('@').map_or(h, |(_, rest)| rest);
    let h = match h.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None if h.matches(':').count() == 1 => h.split(':').next().unwrap_or(h),
        None => h,
    };
    h.split_whitespace().collect()
}

/// Whether two `host`s name the same machine: addresses compared as addresses (`FE80::0001` is
/// `fe80::1`), names without regard to case or a trailing dot.
pub(super) fn same_host(a: &str, b: &str) -> bool {
    use std::net::IpAddr;
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a
            .trim_end_matches('.')
            .eq_ignore_ascii_case(b.trim_end_matches('.')),
    }
}

/// Two `[[terminal]]`s that reach the same terminal (same host and the same HTTP or WebSocket
/// port): each would take every record, so each recognition would be published twice, under
/// two event ids (the id is in the event id), and no consumer could tell them apart.
pub(super) fn duplicate_endpoints(terminals: &[TerminalConfig]) -> Vec<String> {
    let mut p = Vec::new();
    for (j, later) in terminals.iter().enumerate() {
        for earlier in terminals.iter().take(j) {
            if !same_host(&earlier.host, &later.host) {
                continue;
            }
            let port = if earlier.http_port == later.http_port {
                format!("http_port {}", later.http_port)
            } else if earlier.ws_port == later.ws_port {
                format!("ws_port {}", later.ws_port)
            } else {
                continue;
            };
            p.push(format!(
                "terminal[{j}] ({}).host: terminal `{}` and terminal `{}` are the same terminal (`{}`, {port}); every recognition would be published twice under two event ids: keep one",
                later.id,
                earlier.id,
                later.id,
                shown(&later.host),
            ));
        }
    }
    p
}

/// The contributor named in a too-long-topic error: the longest of them, as that is the one to
/// shorten.
pub(super) fn topic_too_long(built: usize, parts: &[(String, usize)]) -> Option<String> {
    if built <= topics::MAX_TOPIC_BYTES {
        return None;
    }
    let (key, _) = parts.iter().max_by_key(|(_, len)| *len)?;
    let lengths: Vec<String> = parts
        .iter()
        .map(|(k, len)| format!("{k} is {len} bytes"))
        .collect();
    Some(format!(
        "{key}: the bridge would build topics of up to {built} bytes from it, over MQTT's limit of {} bytes ({}); shorten it",
        topics::MAX_TOPIC_BYTES,
        lengths.join(", ")
    ))
}
