//! Property tests (fuzzing) over what comes from outside: tasks and results as the server sends
//! and takes them, and every configuration value. CI runs the default 256 cases per property;
//! `tests/fuzz.sh` runs many more (`PROPTEST_CASES`). The batch-poll decoder that splits one bad
//! task from the good ones has its own property test inside `client` (it is private).

use conductor_worker::config::{MapEnv, ServerConfig};
use conductor_worker::{Error, RuntimeOptions, Task, TaskResult, TaskStatus, WorkerOptions};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Field names of a task, so that generated objects often hit the real fields with wrong types.
const TASK_FIELDS: [&str; 14] = [
    "taskId",
    "taskType",
    "workflowInstanceId",
    "status",
    "inputData",
    "retryCount",
    "pollCount",
    "correlationId",
    "domain",
    "responseTimeoutSeconds",
    "callbackAfterSeconds",
    "outputData",
    "startTime",
    "iteration",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // serde_json cannot hold NaN or infinities: finite floats only.
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(&["IN_PROGRESS", "COMPLETED", "BOGUS", ""][..])
            .prop_map(|s| Value::String(s.to_string())),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        prop::sample::select(&TASK_FIELDS[..]).prop_map(str::to_string),
                        "[a-zA-Z]{1,6}",
                    ],
                    inner
                ),
                0..8
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec(("[a-zA-Z_]{1,8}", json_value()), 0..6)
        .prop_map(|kv| kv.into_iter().collect())
}

proptest! {
    /// Anything at all as a task: decoding answers Ok or Err, never panics; what decodes
    /// survives a round trip unchanged.
    #[test]
    fn task_decoding_never_panics_and_round_trips(v in json_value()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        if let Ok(task) = serde_json::from_slice::<Task>(&bytes) {
            let again: Task = serde_json::from_slice(&serde_json::to_vec(&task).unwrap()).unwrap();
            prop_assert_eq!(again, task);
        }
        let _ = serde_json::from_slice::<Vec<Task>>(&bytes);
        let _ = serde_json::from_slice::<TaskResult>(&bytes);
    }

    /// Raw bytes (truncated JSON, invalid UTF-8, garbage) never panic the decoders.
    #[test]
    fn raw_bytes_never_panic_the_decoders(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = serde_json::from_slice::<Vec<Task>>(&bytes);
        let _ = serde_json::from_slice::<Task>(&bytes);
        let _ = serde_json::from_slice::<TaskResult>(&bytes);
    }

    /// A well-formed task with any input decodes with that input, exactly.
    #[test]
    fn any_input_reaches_the_task_unchanged(
        id in "[a-z0-9-]{1,36}",
        input in json_object(),
        poll_count in any::<u32>(),
    ) {
        let body = serde_json::json!([{
            "taskId": id, "workflowInstanceId": "wf", "taskType": "t",
            "inputData": input, "pollCount": poll_count,
        }]);
        // Through bytes, as a poll's answer arrives: floats must survive bit for bit.
        let tasks: Vec<Task> = serde_json::from_slice(&serde_json::to_vec(&body).unwrap()).unwrap();
        prop_assert_eq!(&tasks[0].input_data, &input);
        prop_assert_eq!(tasks[0].poll_count, poll_count);
    }

    /// Every result the runtime can build encodes, and the server-side decode gives it back.
    #[test]
    fn results_round_trip(
        output in json_object(),
        reason in proptest::option::of(".{0,40}"),
        status in prop::sample::select(&[
            TaskStatus::Completed, TaskStatus::Failed,
            TaskStatus::FailedWithTerminalError, TaskStatus::InProgress,
        ][..]),
        callback in proptest::option::of(0u64..100_000),
    ) {
        let mut result = TaskResult::completed("t-1", "wf-1", output);
        result.status = status;
        result.reason_for_incompletion = reason;
        result.callback_after_seconds = callback;
        result.log("a line");
        let bytes = serde_json::to_vec(&result).unwrap();
        let back: TaskResult = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(back, result);
    }

    /// Any value of any runtime variable: a valid configuration, or an error that names the
    /// variable. Never a panic.
    #[test]
    fn runtime_variables_parse_or_name_themselves(
        key in prop::sample::select(&[
            "CONDUCTOR_SERVER_URL", "CONDUCTOR_AUTH_KEY", "CONDUCTOR_AUTH_SECRET",
            "CONDUCTOR_WORKER_METRICS_PORT", "CONDUCTOR_BREAKER_FAILURES",
            "CONDUCTOR_BREAKER_RESET_SECONDS", "CONDUCTOR_CA_BUNDLE", "CONDUCTOR_WORKER_JOURNAL",
            "CONDUCTOR_WORKER_EXTERNAL_PAYLOAD_THRESHOLD_KB",
        ][..]),
        value in prop_oneof![".{0,24}", "[0-9]{0,22}", "-?[0-9]{1,5}", "https?://[a-z.:0-9/]{0,20}"],
    ) {
        let mut pairs = vec![
            ("CONDUCTOR_SERVER_URL".to_string(), "http://127.0.0.1:1/api".to_string()),
        ];
        pairs.push((key.to_string(), value.clone()));
        let env = MapEnv(pairs.into_iter().collect());
        match RuntimeOptions::from_env(&env) {
            Ok(_) => {}
            Err(e @ Error::Config { .. }) => {
                let text = e.to_string();
                // A credentials mismatch names the three together; otherwise the variable.
                prop_assert!(text.contains(key) || text.contains("CONDUCTOR_SERVER_URL"), "{}", text);
            }
            Err(e) => prop_assert!(false, "not a configuration error: {}", e),
        }
    }

    /// Any value of any worker property: parsed, or an error naming the variable.
    #[test]
    fn worker_properties_parse_or_name_themselves(
        prop_name in prop::sample::select(&[
            "poll_interval", "poll_timeout", "thread_count", "concurrency", "domain",
            "worker_id", "paused", "lease_extend", "register_task_def",
        ][..]),
        spelling in 0usize..4,
        value in prop_oneof![".{0,16}", "[0-9]{0,22}", "-?[0-9]{1,7}", "(true|false|yes|no|on|off|1|0)"],
    ) {
        let upper = prop_name.to_ascii_uppercase();
        let key = match spelling {
            0 => format!("conductor.worker.t.{prop_name}"),
            1 => format!("CONDUCTOR_WORKER_T_{upper}"),
            2 => format!("conductor.worker.all.{prop_name}"),
            _ => format!("CONDUCTOR_WORKER_ALL_{upper}"),
        };
        let env = MapEnv([(key.clone(), value)].into_iter().collect());
        let mut options = WorkerOptions::new("t");
        if let Err(e) = options.apply_env(&env) {
            prop_assert!(e.to_string().contains(&key), "{}", e);
        } else {
            // Accepted values are within the limits the checks enforce.
            prop_assert!((1..=100_000).contains(&options.concurrency));
            prop_assert!(options.poll_timeout <= std::time::Duration::from_secs(5));
        }
    }

    /// Any string as a server URL: accepted as an http(s) URL with a host, or refused.
    #[test]
    fn server_urls_never_panic(url in prop_oneof![".{0,40}", "(http|https|ftp)://[^ ]{0,30}"]) {
        if let Ok(server) = ServerConfig::new(&url) {
            prop_assert!(server.url.starts_with("http://") || server.url.starts_with("https://"));
        }
    }
}
