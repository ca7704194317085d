use super::*;

const MINIMAL: &str = r#"
[mqtt]
url = "mqtt://127.0.0.1:1883"

[[terminal]]
id = "front-door"
host = "192.168.1.50"
password = "123456"
"#;

/// The problems `validate` finds in MINIMAL with `from` replaced by `to`.
fn problems_with(from: &str, to: &str) -> Vec<String> {
    let text = MINIMAL.replacen(from, to, 1);
    assert_ne!(text, MINIMAL, "{from} is in MINIMAL");
    Config::parse(&text).expect("parses").validate()
}

fn one_problem_about(problems: &[String], key: &str, words: &str) {
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(key) && p.contains(words)),
        "{key} … {words}: {problems:?}"
    );
}

#[test]
fn a_base_topic_or_discovery_prefix_starting_with_dollar_is_refused() {
    for base in ["$SYS/doors", "$share/g/doors"] {
        let p = problems_with(
            "url = \"mqtt://127.0.0.1:1883\"",
            &format!("url = \"mqtt://127.0.0.1:1883\"\nbase_topic = \"{base}\""),
        );
        one_problem_about(&p, "mqtt.base_topic", "starts with `$`");
    }
    let p = problems_with(
        "[[terminal]]",
        "[home_assistant]\ndiscovery_prefix = \"$SYS\"\n[[terminal]]",
    );
    one_problem_about(&p, "home_assistant.discovery_prefix", "starts with `$`");
}

#[test]
fn a_host_with_a_port_white_space_a_scheme_or_a_path_is_refused_saying_what_to_write() {
    for (host, words) in [
        ("10.0.0.5:80", "has a port"),
        ("10.0.0.5 ", "white space"),
        ("http://10.0.0.5", "has a scheme"),
        ("10.0.0.5/", "has a path"),
        ("[fe80::1]:80", "has a port"),
    ] {
        let p = problems_with("host = \"192.168.1.50\"", &format!("host = \"{host}\""));
        one_problem_about(&p, "terminal[0] (front-door).host", words);
        assert!(p.iter().any(|l| l.contains(": write `")), "{p:?}");
    }
}

#[test]
fn bare_hosts_and_ipv6_addresses_are_taken() {
    for host in ["door.local", "10.0.0.5", "fe80::1", "terminal_1"] {
        assert_eq!(host_problem(host), None, "{host}");
    }
}

#[test]
fn two_terminals_at_one_endpoint_are_refused_naming_both() {
    let second = "\n[[terminal]]\nid = \"again\"\nhost = \"192.168.1.50\"\npassword = \"x\"\n";
    let text = format!("{MINIMAL}{second}");
    let p = Config::parse(&text).expect("parses").validate();
    one_problem_about(
        &p,
        "terminal[1] (again).host",
        "`front-door` and terminal `again`",
    );
    let other_port = format!("{MINIMAL}{second}http_port = 81\nws_port = 9001\n");
    assert!(Config::parse(&other_port)
        .expect("parses")
        .validate()
        .is_empty());
}

#[test]
fn a_base_topic_too_long_for_mqtt_is_refused_with_its_length() {
    let long = "a".repeat(70_000);
    let p = problems_with(
        "url = \"mqtt://127.0.0.1:1883\"",
        &format!("url = \"mqtt://127.0.0.1:1883\"\nbase_topic = \"{long}\""),
    );
    one_problem_about(&p, "mqtt.base_topic", "over MQTT's limit of 65535 bytes");
    assert!(p.iter().all(|l| l.len() < 1000), "no line quotes it whole");
}

#[test]
fn a_minimal_config_gets_the_documented_defaults() {
    let c = Config::parse(MINIMAL).expect("parses");
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    assert_eq!(c.mqtt.base_topic, "face2mqtt");
    assert!(c
        .mqtt
        .client_id
        .as_deref()
        .is_some_and(|id| id.starts_with("face2mqtt-")));
    assert!(c.home_assistant.enabled);
    assert_eq!(c.home_assistant.discovery_prefix, "homeassistant");
    assert_eq!(c.spool.dir, PathBuf::from("/var/lib/face2mqtt"));
    assert_eq!(c.spool.max_size, ByteSize(512 << 20));
    assert_eq!(c.spool.memory, ByteSize(2 << 20));
    let t = &c.terminals[0];
    assert_eq!((t.http_port, t.ws_port), (80, 9000));
    assert_eq!(t.time_sync_interval, Duration::from_secs(6 * 3600));
    assert_eq!(t.display_name(), "front-door");
    assert_eq!(
        (t.ping_interval, t.dead_after),
        (Duration::from_secs(10), Duration::from_secs(33))
    );
}

#[test]
fn a_terminal_s_commands_are_its_allow_list_and_by_default_every_command() {
    use crate::messages::Cmd;
    let c = Config::parse(MINIMAL).expect("parses");
    assert_eq!(
        c.terminals[0].allowed_commands(),
        [Cmd::Open, Cmd::Reboot, Cmd::SyncTime]
            .into_iter()
            .collect()
    );
    let text = MINIMAL.replace("password =", "commands = [\"sync_time\"]\npassword =");
    let c = Config::parse(&text).expect("parses");
    assert_eq!(
        c.terminals[0].allowed_commands(),
        [Cmd::SyncTime].into_iter().collect()
    );
    let text = MINIMAL.replace("password =", "commands = []\npassword =");
    let c = Config::parse(&text).expect("parses");
    assert!(c.terminals[0].allowed_commands().is_empty());
}

#[test]
fn the_people_commands_are_off_unless_a_terminal_names_them() {
    use crate::messages::Cmd;
    let c = Config::parse(MINIMAL).expect("parses");
    assert!(c.terminals[0]
        .allowed_commands()
        .iter()
        .all(|c| !c.is_people()));
    assert!(!c.terminals[0].keeps_captures());
    let text = MINIMAL.replace("password =", "commands = [\"open\", \"admit\"]\npassword =");
    let c = Config::parse(&text).expect("parses");
    assert!(c.terminals[0].allowed_commands().contains(&Cmd::Admit));
    assert!(c.terminals[0].keeps_captures());
    assert_eq!(c.people.max_pass, Duration::from_secs(7 * 24 * 3600));
}

#[test]
fn a_misspelt_command_fails_the_load_naming_the_key_and_the_choices() {
    let text = MINIMAL.replace("password =", "commands = [\"opne\"]\npassword =");
    let err = Config::parse(&text).expect_err("refused");
    assert!(err.contains("commands") && err.contains("opne"), "{err}");
    assert!(err.contains("admit") && err.contains("sync_time"), "{err}");
}

#[test]
fn people_windows_out_of_range_are_refused_by_key() {
    for (k, v) in [
        ("admit_window", "30s"),
        ("admit_window", "2d"),
        ("max_pass", "400d"),
        ("refresh", "5s"),
    ] {
        let text = format!("{MINIMAL}\n[people]\n{k} = \"{v}\"\n");
        let problems = Config::parse(&text).expect("parses").validate();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&format!("people.{k}:"))),
            "{k}={v}: {problems:?}"
        );
    }
}

#[test]
fn an_unknown_key_is_an_error_that_names_it() {
    let text = MINIMAL.replace("host =", "hots = \"x\"\nhost =");
    let err = Config::parse(&text).expect_err("unknown key");
    assert!(err.contains("hots"), "{err}");
}

#[test]
fn a_bad_terminal_id_names_the_key() {
    let text = MINIMAL.replace("front-door", "Front Door");
    let problems = Config::parse(&text).expect("parses").validate();
    assert!(
        problems.iter().any(|p| p.starts_with("terminal[0].id:")),
        "{problems:?}"
    );
}

#[test]
fn a_terminal_without_password_is_invalid() {
    let text = MINIMAL.replace("password = \"123456\"", "");
    let problems = Config::parse(&text).expect("parses").validate();
    assert!(
        problems
            .iter()
            .any(|p| p.contains(".password: give password or password_file")),
        "{problems:?}"
    );
}

#[test]
fn a_button_must_name_a_configured_terminal() {
    let text = format!("{MINIMAL}\n[[button]]\npin = 17\nterminal = \"back\"\npress = \"open\"\n");
    let problems = Config::parse(&text).expect("parses").validate();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("button[0].terminal:")),
        "{problems:?}"
    );
}

#[test]
fn a_bad_duration_is_a_parse_error() {
    let text = MINIMAL.replace(
        "password = \"123456\"",
        "password = \"1\"\ntime_sync_interval = \"often\"",
    );
    let err = Config::parse(&text).expect_err("bad duration");
    assert!(err.contains("time_sync_interval"), "{err}");
}

#[test]
fn sizes_parse_in_binary_and_decimal_units() {
    assert_eq!(ByteSize::parse("512MiB"), Ok(ByteSize(512 << 20)));
    assert_eq!(ByteSize::parse("1 GB"), Ok(ByteSize(1_000_000_000)));
    assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
    assert!(ByteSize::parse("lots").is_err());
    assert!(ByteSize::parse("5 parsecs").is_err());
    assert_eq!(ByteSize(512 << 20).to_string(), "512MiB");
}

/// Finding 10 of issue 9: this was accepted (the float saturated to 16 EiB).
#[test]
fn a_memory_budget_outside_256_kib_to_1_gib_is_a_config_error_naming_the_key() {
    for bad in ["0", "255KiB", "2GiB", "18446744073709551615"] {
        let text = format!("{MINIMAL}\n[spool]\nmemory = \"{bad}\"\n");
        let c = Config::parse(&text).expect("parses");
        let problems = c.validate();
        assert!(
            problems.iter().any(|p| p.starts_with("spool.memory:")),
            "{bad}: {problems:?}"
        );
    }
    for good in ["256KiB", "8MiB", "1GiB"] {
        let text = format!("{MINIMAL}\n[spool]\nmemory = \"{good}\"\n");
        let c = Config::parse(&text).expect("parses");
        assert!(c.validate().is_empty(), "{good}: {:?}", c.validate());
    }
}

#[test]
fn a_size_that_overflows_is_an_error_not_a_saturated_number() {
    assert!(ByteSize::parse("99999999999999999999GiB").is_err());
    assert!(ByteSize::parse("18446744073709551615GiB").is_err());
    assert!(ByteSize::parse("99999999999999999999.5GiB").is_err());
    assert!(ByteSize::parse("18446744073709551616").is_err());
    assert_eq!(
        ByteSize::parse("18446744073709551615"),
        Ok(ByteSize(u64::MAX))
    );
    assert_eq!(ByteSize::parse("1.5KiB"), Ok(ByteSize(1536)));
    let text = format!("{MINIMAL}\n[spool]\nmax_size = \"99999999999999999999GiB\"\n");
    let e = Config::parse(&text).expect_err("refused");
    assert!(e.contains("max_size") && e.contains("too large"), "{e}");
}

/// Finding 10 of issue 9: the spool went into the working directory.
#[test]
fn an_empty_spool_dir_is_a_config_error() {
    let c = Config::parse(&format!("{MINIMAL}\n[spool]\ndir = \"\"\n")).expect("parses");
    let problems = c.validate();
    assert!(
        problems.iter().any(|p| p.starts_with("spool.dir:")),
        "{problems:?}"
    );
}

/// Finding 10 of issue 9: any word passed as a filter (a target that never logs).
#[test]
fn a_garbage_log_level_is_a_config_error() {
    for bad in [
        "loud",
        "",
        "info,,",
        "face2mqtt=loud",
        "=info",
        "info;debug",
        "a b=info",
        " info",
        // Found by the `config` fuzz target: panicked inside tracing's filter parser.
        "\u{2005}_f=off",
    ] {
        let c = Config::parse(&format!("{MINIMAL}\n[log]\nlevel = \"{bad}\"\n")).expect("parses");
        let problems = c.validate();
        assert!(
            problems.iter().any(|p| p.starts_with("log.level:")),
            "`{bad}`: {problems:?}"
        );
    }
    for good in [
        "info",
        "WARN",
        "face2mqtt=trace,info",
        "face2mqtt::pipeline::ingest=debug,rumqttc=off",
    ] {
        assert_eq!(check_log_filter(good), Ok(()), "{good}");
    }
}

#[test]
fn a_duration_beyond_a_year_is_a_config_error() {
    let text = MINIMAL.replace(
        "password = \"123456\"",
        "password = \"123456\"\nreconnect_max = \"100000000y\"\nbackfill_first = \"500y\"",
    );
    let c = Config::parse(&text).expect("parses");
    let problems = c.validate();
    assert!(
        problems.iter().any(|p| p.contains(".reconnect_max:"))
            && problems.iter().any(|p| p.contains(".backfill_first:")),
        "{problems:?}"
    );
    let c = Config::parse(MINIMAL).expect("parses");
    assert_eq!(c.validate(), Vec::<String>::new());
}

#[test]
fn a_keep_alive_beyond_mqtts_16_bits_is_a_config_error() {
    let text = MINIMAL.replace(
        "url = \"mqtt://127.0.0.1:1883\"",
        "url = \"mqtt://127.0.0.1:1883\"\nkeep_alive = \"20h\"",
    );
    let problems = Config::parse(&text).expect("parses").validate();
    assert!(
        problems.iter().any(|p| p.starts_with("mqtt.keep_alive:")),
        "{problems:?}"
    );
}

#[test]
fn broker_urls_parse_with_default_ports() {
    assert_eq!(
        BrokerAddr::parse("mqtt://h"),
        Ok(BrokerAddr {
            host: "h".into(),
            port: 1883,
            tls: false
        })
    );
    assert_eq!(
        BrokerAddr::parse("mqtts://h:9999"),
        Ok(BrokerAddr {
            host: "h".into(),
            port: 9999,
            tls: true
        })
    );
    assert_eq!(
        BrokerAddr::parse("mqtt://[::1]:1884"),
        Ok(BrokerAddr {
            host: "::1".into(),
            port: 1884,
            tls: false
        })
    );
    assert!(BrokerAddr::parse("http://h").is_err());
    assert!(BrokerAddr::parse("mqtt://u:p@h").is_err());
    let e = BrokerAddr::parse("mqtt://bridge:s3cret@h:1884").expect_err("a login in the URL");
    assert!(
        !e.contains("s3cret") && e.contains("mqtt.username") && e.contains("h:1884"),
        "{e}"
    );
    let e = BrokerAddr::parse("mqtt://h/path").expect_err("a path");
    assert!(e.contains("no path") && !e.contains("username"), "{e}");
}

#[test]
fn mqtts_without_tls_files_is_valid_and_trusts_the_built_in_roots() {
    let text = MINIMAL.replace("mqtt://127.0.0.1:1883", "mqtts://broker.example");
    let c = Config::parse(&text).expect("parses");
    assert_eq!(c.validate(), Vec::<String>::new());
    assert!(c.mqtt.tls.ca.is_none() && c.mqtt.tls.client.is_none());
}

#[test]
fn an_mqtts_host_a_certificate_cannot_name_is_a_config_error() {
    let text = MINIMAL.replace("mqtt://127.0.0.1:1883", "mqtts://bad_host!");
    let problems = Config::parse(&text).expect("parses").validate();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("mqtt.url: `bad_host!`")),
        "{problems:?}"
    );
}

#[test]
fn a_client_key_without_its_certificate_names_the_missing_key() {
    let text = MINIMAL.replace(
        "mqtt://127.0.0.1:1883\"",
        "mqtts://broker.example\"\nclient_key_file = \"/k\"",
    );
    let problems = Config::parse(&text).expect("parses").validate();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("mqtt.client_cert_file:")),
        "{problems:?}"
    );
}

#[test]
fn a_password_file_is_read_without_its_trailing_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").expect("write");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        MINIMAL.replace(
            "password = \"123456\"",
            &format!("password_file = {:?}", pw),
        ),
    )
    .expect("write");
    let c = Config::load(&cfg).expect("loads");
    assert_eq!(
        c.terminals[0].password.as_ref().map(Secret::expose),
        Some("s3cret")
    );
}

#[test]
fn a_missing_password_file_names_the_key_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        MINIMAL.replace(
            "password = \"123456\"",
            "password_file = \"/nonexistent/pw\"",
        ),
    )
    .expect("write");
    let err = Config::load(&cfg).expect_err("missing file").to_string();
    assert!(
        err.contains("password_file") && err.contains("/nonexistent/pw"),
        "{err}"
    );
}

#[test]
fn a_password_file_that_never_ends_is_read_no_further_than_64_kib() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("huge");
    std::fs::write(&pw, vec![b'x'; 1 << 20]).expect("write");
    let s = read_secret(&pw).expect("reads");
    assert_eq!(s.expose().len(), 64 << 10);
}

#[test]
fn a_systemd_credential_outside_the_service_is_explained_not_just_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("c.toml");
    let path = "/run/credentials/face2mqtt-test-absent.service/front-door";
    std::fs::write(
        &cfg,
        MINIMAL.replace(
            "password = \"123456\"",
            &format!("password_file = \"{path}\""),
        ),
    )
    .expect("write");
    let err = Config::load(&cfg)
        .expect_err("no credential here")
        .to_string();
    assert!(
        err.contains(path) && err.contains("only while systemd runs the service"),
        "{err}"
    );
    assert!(err.contains("/etc/face2mqtt/front-door.password"), "{err}");
}

#[test]
fn only_a_file_directly_in_a_units_credential_directory_is_a_credential() {
    let named = |p: &str| credential_source(Path::new(p));
    assert_eq!(
        named("/run/credentials/x.service/mqtt").as_deref(),
        Some("mqtt")
    );
    assert_eq!(named("/run/credentials/x.service"), None);
    assert_eq!(named("/run/credentials/x.service/a/b"), None);
    assert_eq!(named("/etc/face2mqtt/mqtt.password"), None);
}

#[test]
fn the_installed_config_is_minimal_and_valid_as_shipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, include_str!("../../packaging/config.toml")).expect("write");
    let c = Config::load(&cfg).expect("the installed config loads");
    assert_eq!(c.terminals.len(), 1, "one terminal, no leftover second one");
    assert!(
        c.buttons.is_empty(),
        "no button opens a door on a pin the site may use"
    );
    assert!(
        c.status_led.is_none(),
        "no LED drives a pin the site may use"
    );
    assert!(
        c.terminals[0].password_file.is_none(),
        "nothing only systemd can read"
    );
    assert_eq!(
        c.spool.dir,
        Path::new("/var/lib/face2mqtt"),
        "the unit's StateDirectory"
    );
}

#[test]
fn the_example_config_parses_and_validates() {
    let text = include_str!("../../examples/config.toml");
    let c = Config::parse(text).expect("example parses");
    assert_eq!(c.validate(), Vec::<String>::new());
    assert!(!c.terminals.is_empty() && !c.buttons.is_empty());
}
