//! Every setting the core reads, given an invalid value, is an error that names the setting (the
//! variable a user would have to fix) and shows the value. Never a panic, never a default.

use std::time::Duration;

use conductor_worker::config::{HostType, MapEnv, ServerConfig};
use conductor_worker::{Error, Runtime, RuntimeOptions, WorkerOptions};
use serde_json::json;

fn env(pairs: &[(&str, &str)]) -> MapEnv {
    MapEnv(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn assert_names(err: &Error, setting: &str, value: &str) {
    let text = err.to_string();
    assert!(
        matches!(err, Error::Config { .. }),
        "{setting}={value:?}: not a configuration error: {text}"
    );
    assert!(
        text.contains(setting),
        "{setting}={value:?}: the error does not name the setting: {text}"
    );
    assert!(
        text.contains(value.trim()),
        "{setting}={value:?}: the error does not show the value: {text}"
    );
}

fn runtime_err(pairs: &[(&str, &str)]) -> Error {
    let mut all = vec![("CONDUCTOR_SERVER_URL", "http://127.0.0.1:1/api")];
    all.extend_from_slice(pairs);
    match RuntimeOptions::from_env(&env(&all)) {
        Ok(o) => panic!("{pairs:?} was accepted: {o:?}"),
        Err(e) => e,
    }
}

#[test]
fn every_runtime_variable_with_an_invalid_value_is_named() {
    for (key, value) in [
        ("CONDUCTOR_WORKER_METRICS_PORT", "http"),
        ("CONDUCTOR_WORKER_METRICS_PORT", "70000"),
        ("CONDUCTOR_WORKER_METRICS_PORT", "-1"),
        ("CONDUCTOR_BREAKER_FAILURES", "0"),
        ("CONDUCTOR_BREAKER_FAILURES", "three"),
        ("CONDUCTOR_BREAKER_FAILURES", "99999999999"),
        ("CONDUCTOR_BREAKER_RESET_SECONDS", "soon"),
        ("CONDUCTOR_BREAKER_RESET_SECONDS", "-5"),
        ("CONDUCTOR_CA_BUNDLE", "/nonexistent/ca.pem"),
        ("CONDUCTOR_WORKER_EXTERNAL_PAYLOAD_THRESHOLD_KB", "0"),
        ("CONDUCTOR_WORKER_EXTERNAL_PAYLOAD_THRESHOLD_KB", "3MB"),
        ("CONDUCTOR_WORKER_EXTERNAL_PAYLOAD_THRESHOLD_KB", "-1"),
    ] {
        assert_names(&runtime_err(&[(key, value)]), key, value);
    }
}

#[test]
fn the_external_payload_threshold_is_read_in_kb() {
    let options = RuntimeOptions::from_env(&env(&[
        ("CONDUCTOR_SERVER_URL", "http://127.0.0.1:1/api"),
        ("CONDUCTOR_WORKER_EXTERNAL_PAYLOAD_THRESHOLD_KB", " 512 "),
    ]))
    .unwrap();
    assert_eq!(options.external_payload_threshold_bytes(), 512 * 1024);
    let defaults =
        RuntimeOptions::from_env(&env(&[("CONDUCTOR_SERVER_URL", "http://127.0.0.1:1/api")]))
            .unwrap();
    assert_eq!(defaults.external_payload_threshold_kb, 3072);
}

#[test]
fn a_ca_bundle_without_certificates_is_named() {
    let dir = std::env::temp_dir().join(format!("cw-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, content) in [
        ("empty.pem", "".to_string()),
        ("text.pem", "not a certificate\n".to_string()),
        (
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_string(),
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        let path = path.to_string_lossy().into_owned();
        assert_names(
            &runtime_err(&[("CONDUCTOR_CA_BUNDLE", &path)]),
            "CONDUCTOR_CA_BUNDLE",
            &path,
        );
    }
    // A directory is not a bundle either.
    let d = dir.to_string_lossy().into_owned();
    assert_names(
        &runtime_err(&[("CONDUCTOR_CA_BUNDLE", &d)]),
        "CONDUCTOR_CA_BUNDLE",
        &d,
    );
}

#[test]
fn malformed_server_urls_are_named() {
    for url in [
        "localhost:8080/api",
        "ftp://example.com/api",
        "http://",
        "http://:8080/api",
        "http://exa mple.com/api",
        "http://example.com:99999/api",
        "https://[::1/api",
        "http://a/api,,http://b/api",
    ] {
        let err = ServerConfig::from_env(&env(&[("CONDUCTOR_SERVER_URL", url)])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("CONDUCTOR_SERVER_URL"), "{url}: {text}");
        assert!(matches!(err, Error::Config { .. }), "{url}: {text}");
    }
    // Credentials in the URL are refused, and the refusal does not repeat them.
    let err = ServerConfig::from_env(&env(&[(
        "CONDUCTOR_SERVER_URL",
        "https://user:pa55word@example.com/api",
    )]))
    .unwrap_err()
    .to_string();
    assert!(err.contains("CONDUCTOR_SERVER_URL"), "{err}");
    assert!(!err.contains("pa55word"), "the password leaked: {err}");
}

#[test]
fn mismatched_credential_lists_name_all_three_and_show_no_secret() {
    for (keys, secrets) in [("k1", "s3cr3t-a,s3cr3t-b"), ("k1,k2", ""), ("", "s3cr3t-a")] {
        let err = ServerConfig::from_env(&env(&[
            ("CONDUCTOR_SERVER_URL", "https://a/api,https://b/api"),
            ("CONDUCTOR_AUTH_KEY", keys),
            ("CONDUCTOR_AUTH_SECRET", secrets),
        ]))
        .unwrap_err()
        .to_string();
        for name in [
            "CONDUCTOR_SERVER_URL",
            "CONDUCTOR_AUTH_KEY",
            "CONDUCTOR_AUTH_SECRET",
        ] {
            assert!(err.contains(name), "{err}");
        }
        assert!(!err.contains("s3cr3t"), "a secret leaked: {err}");
    }
}

/// Each worker property, in each of the four spellings, with values that do not parse or are
/// out of range. The error names the exact variable.
#[test]
fn every_worker_property_with_an_invalid_value_is_named() {
    let props: [(&str, &[&str]); 10] = [
        ("poll_interval", &["soon", "-1", "1.5", "99999999999"]),
        ("poll_interval_millis", &["often"]),
        ("poll_timeout", &["x", "60000", "-3"]),
        ("thread_count", &["many", "0", "-3", "1000000"]),
        ("concurrency", &["lots", "0"]),
        ("paused", &["maybe", "2"]),
        ("lease_extend", &["perhaps"]),
        ("lease_extend_enabled", &["nah"]),
        ("register_task_def", &["sometimes"]),
        ("worker_id", &["   "]),
    ];
    for (prop, values) in props {
        let upper = prop.to_ascii_uppercase();
        for key in [
            format!("conductor.worker.greet-v2.{prop}"),
            format!("CONDUCTOR_WORKER_GREET_V2_{upper}"),
            format!("conductor.worker.all.{prop}"),
            format!("CONDUCTOR_WORKER_ALL_{upper}"),
        ] {
            for value in values {
                let mut options = WorkerOptions::new("greet-v2");
                let err = options
                    .apply_env(&env(&[(&key, value)]))
                    .expect_err(&format!("{key}={value:?} was accepted"));
                let text = err.to_string();
                assert!(text.contains(&key), "{key}={value:?}: {text}");
                if !value.trim().is_empty() {
                    assert!(text.contains(value), "{key}={value:?}: {text}");
                }
            }
        }
    }
}

/// Options as a host gives them (a Python dict or Ruby Hash, as JSON): a bad value, a wrong
/// type or an unknown name is an error naming the worker, the option and the value.
#[test]
fn options_set_in_code_are_named_too() {
    for (given, needle, value) in [
        (
            json!({"concurrency": 0}),
            "worker \"t\" option concurrency",
            "0",
        ),
        (
            json!({"concurrency": "4"}),
            "worker \"t\" option concurrency",
            "4",
        ),
        (
            json!({"concurrency": 2.5}),
            "worker \"t\" option concurrency",
            "2.5",
        ),
        (
            json!({"poll_timeout": 6}),
            "worker \"t\" option poll_timeout",
            "6000ms",
        ),
        (
            json!({"poll_interval": 7200}),
            "worker \"t\" option poll_interval",
            "7200000ms",
        ),
        (
            json!({"poll_interval": -1}),
            "worker \"t\" option poll_interval",
            "-1",
        ),
        (
            json!({"worker_id": ""}),
            "worker \"t\" option worker_id",
            "",
        ),
        (
            json!({"paused": "yes"}),
            "worker \"t\" option paused",
            "yes",
        ),
        (json!({"register": 3}), "worker \"t\" option register", "3"),
        (
            json!({"register": {"retryCount": "x"}}),
            "task definition for \"t\"",
            "retryCount",
        ),
        (
            json!({"concurency": 4}),
            "worker \"t\" option concurency",
            "concurency",
        ),
    ] {
        let err = WorkerOptions::from_host("t", given.as_object().unwrap())
            .expect_err(&format!("{given} was accepted"))
            .to_string();
        assert!(
            err.contains(needle) && err.contains(value),
            "{given}: {err}"
        );
    }
    for bad_type in ["", "a/b"] {
        let err = WorkerOptions::from_host(bad_type, &Default::default()).unwrap_err();
        assert!(err.to_string().contains("task_type"), "{err}");
    }
}

/// What a host gives is what the worker gets; `null` means "not given".
#[test]
fn options_from_a_host_reach_every_field() {
    let given = json!({
        "concurrency": 7, "poll_interval": 0.25, "poll_timeout": 2, "domain": "blue",
        "worker_id": "w-1", "lease_extend": false, "paused": true,
        "register": {"retryCount": 5},
    });
    let o = WorkerOptions::from_host("t", given.as_object().unwrap()).unwrap();
    assert_eq!(
        (o.concurrency, o.domain.as_deref(), o.worker_id.as_str()),
        (7, Some("blue"), "w-1")
    );
    assert_eq!(
        (o.poll_interval, o.poll_timeout),
        (Duration::from_millis(250), Duration::from_secs(2))
    );
    assert!(!o.lease_extend && o.paused);
    assert_eq!(o.register.map(|d| d.retry_count), Some(5));

    let nulls = json!({"concurrency": null, "domain": "", "register": true});
    let o = WorkerOptions::from_host("t", nulls.as_object().unwrap()).unwrap();
    assert_eq!((o.concurrency, o.domain), (1, None));
    assert_eq!(o.register.map(|d| d.name), Some("t".to_owned()));

    // Every option the table declares is settable from a host by its name.
    for option in WorkerOptions::options() {
        let value = match option.host_type {
            HostType::Integer => json!(3),
            HostType::Seconds => json!(0.5),
            HostType::Flag => json!(option.default != "true"),
            HostType::TaskDef => json!(true),
            _ => json!("x"),
        };
        let given = json!({ option.name: value });
        let set = WorkerOptions::from_host("t", given.as_object().unwrap()).unwrap();
        assert_ne!(set, WorkerOptions::new("t"), "{} was not set", option.name);
    }
}

/// Runtime options from a host: on top of the environment, each named when refused, and a
/// server's secret never shown.
#[test]
fn runtime_options_from_a_host() {
    let environment = env(&[
        ("CONDUCTOR_SERVER_URL", "http://a:1/api"),
        ("CONDUCTOR_WORKER_METRICS_PORT", "9100"),
    ]);
    let given = json!({
        "servers": ["http://b:2/api", ["http://c:3/api", "key", "s3cr3t"]],
        "request_timeout": 1.5, "breaker_failures": 5, "breaker_reset": 2,
        "external_payload_threshold_kb": 64, "journal": "off",
    });
    let o = RuntimeOptions::from_host(given.as_object().unwrap(), &environment).unwrap();
    let urls: Vec<_> = o.servers.iter().map(|s| s.url.as_str()).collect();
    assert_eq!(urls, ["http://b:2/api", "http://c:3/api"]);
    assert!(o.servers[1].credentials.is_some());
    assert_eq!(
        (
            o.metrics_port,
            o.breaker_failures,
            o.external_payload_threshold_kb
        ),
        (Some(9100), 5, 64)
    );
    assert_eq!(
        (o.request_timeout, o.breaker_reset),
        (Duration::from_millis(1500), Duration::from_secs(2))
    );

    for (given, needle) in [
        (json!({"metrics_port": 70000}), "70000"),
        (json!({"breaker_failures": 0}), "breaker_failures"),
        (
            json!({"external_payload_threshold_kb": 0}),
            "external_payload_threshold_kb",
        ),
        (json!({"request_timeout": "soon"}), "soon"),
        (
            json!({"servers": [["http://c:3/api", "key"]]}),
            "key_secret",
        ),
        (json!({"servers": ["localhost:8080"]}), "localhost:8080"),
        (json!({"metrics": 1}), "the options are"),
    ] {
        let err = RuntimeOptions::from_host(given.as_object().unwrap(), &environment)
            .expect_err(&format!("{given} was accepted"))
            .to_string();
        assert!(
            err.contains(needle) && !err.contains("s3cr3t"),
            "{given}: {err}"
        );
    }
    let leaky = json!({"servers": [["nope", "key", "s3cr3t"]]});
    let err = RuntimeOptions::from_host(leaky.as_object().unwrap(), &environment).unwrap_err();
    assert!(
        !err.to_string().contains("s3cr3t"),
        "a secret leaked: {err}"
    );
}

/// A runtime refuses a worker with an invalid setting at `add_worker`, naming it, and keeps
/// running the others.
#[tokio::test]
async fn the_runtime_rejects_an_invalid_worker_and_keeps_the_rest() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = Runtime::new(RuntimeOptions::new(vec![
        ServerConfig::new("http://127.0.0.1:1/api").unwrap(),
    ]))
    .unwrap();
    let err = runtime
        .add_worker(WorkerOptions::new("ok").concurrency(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("concurrency"), "{err}");
    runtime.add_worker(WorkerOptions::new("ok")).unwrap();
    let err = runtime
        .add_worker(WorkerOptions::new("ok"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("already registered"), "{err}");
}
