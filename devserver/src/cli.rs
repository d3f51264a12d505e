//! Command-line flags of the `conductor-devserver` binary.

use clap::{CommandFactory, Parser};

use crate::auth::ApiKey;
use crate::faults::{Faults, parse_group_rate};
use crate::payload::{ExternalStorage, PayloadLimits};
use crate::server::Config;

fn parse_rate(s: &str) -> Result<(String, f64), String> {
    parse_group_rate(s)
}

fn parse_missing_status(s: &str) -> Result<u16, String> {
    match s {
        "404" => Ok(404),
        "405" => Ok(405),
        _ => Err(format!("expected 404 or 405, got {s:?}")),
    }
}

fn parse_base_url(s: &str) -> Result<String, String> {
    if s.starts_with("http://") || s.starts_with("https://") {
        Ok(s.trim_end_matches('/').to_string())
    } else {
        Err(format!("expected an http:// or https:// URL, got {s:?}"))
    }
}

/// An in-memory Conductor-compatible server with fault injection.
#[derive(Debug, Parser)]
#[command(name = "conductor-devserver", version)]
pub struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to bind; 0 picks a free port.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Enables Orkes-style auth with this key; repeatable.
    #[arg(long = "auth", value_name = "KEY:SECRET", value_parser = |s: &str| s.parse::<ApiKey>())]
    pub auth: Vec<ApiKey>,
    /// Lifetime of issued tokens.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl_secs: u64,
    /// Delay added before every request is handled.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Probability of a 500 for a group (poll, update, log, task, metadata, workflow, token,
    /// external, all).
    #[arg(long, value_name = "GROUP=RATE", value_parser = parse_rate)]
    pub fail_rate: Vec<(String, f64)>,
    /// Probability that a connection is closed without an answer.
    #[arg(long, value_name = "GROUP=RATE", value_parser = parse_rate)]
    pub drop_rate: Vec<(String, f64)>,
    /// Probability of a 200 with a truncated JSON body.
    #[arg(long, value_name = "GROUP=RATE", value_parser = parse_rate)]
    pub malformed_rate: Vec<(String, f64)>,
    /// Probability that a request is handled (an update applied) and the connection then closed
    /// without an answer.
    #[arg(long, value_name = "GROUP=RATE", value_parser = parse_rate)]
    pub reset_after_rate: Vec<(String, f64)>,
    /// Start paused: accept connections, answer nothing until POST /admin/resume.
    #[arg(long)]
    pub paused: bool,
    /// Answer update-v2 like a server older than 3.21.12 (route missing).
    #[arg(long)]
    pub no_update_v2: bool,
    /// Status of the missing update-v2 route.
    #[arg(long, value_name = "404|405", default_value = "404", value_parser = parse_missing_status)]
    pub update_v2_missing_status: u16,
    /// How often response timeouts are checked.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub sweep_interval_ms: u64,
    /// A batch poll with a timeout waits for `count` tasks (or the timeout), like the real
    /// server's SQLite and Postgres queues, instead of answering as soon as one is ready.
    #[arg(long)]
    pub batch_poll_waits_for_count: bool,
    /// Task input above this size (KB) is stored externally.
    #[arg(long, default_value_t = 3072, value_parser = clap::value_parser!(u64).range(1..))]
    pub task_input_threshold_kb: u64,
    /// Task output above this size (KB) is stored externally.
    #[arg(long, default_value_t = 3072, value_parser = clap::value_parser!(u64).range(1..))]
    pub task_output_threshold_kb: u64,
    /// A task input or output above this size (KB) fails the task.
    #[arg(long, default_value_t = 10240, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_task_payload_kb: u64,
    /// What workers may do with stored payloads: upload (GET and PUT), read-only (GET; PUT is
    /// 405, like the postgres storage), none (no uri, like the default storage).
    #[arg(long, value_enum, default_value = "upload")]
    pub external_storage: ExternalStorage,
    /// Base of the storage uris handed out (`<base>/<key>`); default: this server's
    /// `/api/external`.
    #[arg(long, value_name = "BASE", value_parser = parse_base_url)]
    pub external_storage_url: Option<String>,
}

impl Args {
    /// Checks what one flag alone cannot: a threshold above the hard limit.
    pub fn check(&self) -> Result<(), clap::Error> {
        for (flag, value) in [
            ("--task-input-threshold-kb", self.task_input_threshold_kb),
            ("--task-output-threshold-kb", self.task_output_threshold_kb),
        ] {
            if value > self.max_task_payload_kb {
                return Err(Args::command().error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!(
                        "{flag} {value} is more than --max-task-payload-kb {}",
                        self.max_task_payload_kb
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The library configuration these flags describe.
    pub fn into_config(self) -> Config {
        Config {
            host: self.host,
            port: self.port,
            auth: self.auth,
            token_ttl_secs: self.token_ttl_secs,
            faults: Faults {
                latency_ms: self.latency_ms,
                fail_rate: self.fail_rate.into_iter().collect(),
                drop_rate: self.drop_rate.into_iter().collect(),
                malformed_rate: self.malformed_rate.into_iter().collect(),
                reset_after_rate: self.reset_after_rate.into_iter().collect(),
                paused: self.paused,
                update_v2: !self.no_update_v2,
                update_v2_missing_status: self.update_v2_missing_status,
                batch_poll_waits_for_count: self.batch_poll_waits_for_count,
            },
            sweep_interval_ms: self.sweep_interval_ms,
            payloads: PayloadLimits {
                task_input_threshold_kb: self.task_input_threshold_kb,
                task_output_threshold_kb: self.task_output_threshold_kb,
                max_task_payload_kb: self.max_task_payload_kb,
                storage: self.external_storage,
                storage_base_url: self.external_storage_url,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let a = Args::try_parse_from(
            std::iter::once("conductor-devserver").chain(args.iter().copied()),
        )?;
        a.check()?;
        Ok(a.into_config())
    }

    #[test]
    fn flags_map_onto_the_config() {
        let c = parse(&[
            "--port",
            "0",
            "--auth",
            "k:s",
            "--auth",
            "k2:s2",
            "--fail-rate",
            "update=0.5",
            "--drop-rate",
            "all=0.1",
            "--malformed-rate",
            "poll=1",
            "--reset-after-rate",
            "update=0.25",
            "--latency-ms",
            "7",
            "--paused",
            "--no-update-v2",
            "--update-v2-missing-status",
            "405",
            "--batch-poll-waits-for-count",
            "--task-input-threshold-kb",
            "100",
            "--task-output-threshold-kb",
            "200",
            "--max-task-payload-kb",
            "300",
            "--external-storage",
            "read-only",
            "--external-storage-url",
            "https://store.example/p/",
        ])
        .unwrap();
        assert_eq!(c.port, 0);
        assert_eq!(c.auth.len(), 2);
        assert_eq!(c.faults.fail_rate["update"], 0.5);
        assert_eq!(c.faults.drop_rate["all"], 0.1);
        assert_eq!(c.faults.malformed_rate["poll"], 1.0);
        assert_eq!(c.faults.reset_after_rate["update"], 0.25);
        assert_eq!(c.faults.latency_ms, 7);
        assert!(c.faults.paused && !c.faults.update_v2);
        assert_eq!(c.faults.update_v2_missing_status, 405);
        assert!(c.faults.batch_poll_waits_for_count);
        let p = &c.payloads;
        assert_eq!(
            (p.task_input_threshold_kb, p.task_output_threshold_kb),
            (100, 200)
        );
        assert_eq!(p.max_task_payload_kb, 300);
        assert_eq!(p.storage, ExternalStorage::ReadOnly);
        assert_eq!(
            p.storage_base_url.as_deref(),
            Some("https://store.example/p")
        );
        let d = parse(&[]).unwrap();
        assert_eq!(d.payloads, PayloadLimits::default());
        assert!(!d.faults.batch_poll_waits_for_count);
        let none = parse(&["--external-storage", "none"]).unwrap();
        assert_eq!(none.payloads.storage, ExternalStorage::None);
    }

    #[test]
    fn bad_values_name_the_flag_and_value() {
        for (args, needle) in [
            (&["--fail-rate", "update=2"][..], "--fail-rate"),
            (&["--drop-rate", "bogus=0.1"][..], "bogus"),
            (&["--auth", "nocolon"][..], "--auth"),
            (&["--port", "99999"][..], "99999"),
            (&["--update-v2-missing-status", "500"][..], "500"),
            (&["--fail-rate", "nope=0.5"][..], "external"),
            (&["--external-storage", "s3"][..], "s3"),
            (&["--external-storage", "s3"][..], "--external-storage"),
            (&["--external-storage-url", "ftp://x"][..], "ftp://x"),
            (
                &["--task-input-threshold-kb", "0"][..],
                "--task-input-threshold-kb",
            ),
            (&["--max-task-payload-kb", "0"][..], "--max-task-payload-kb"),
            (&["--task-output-threshold-kb", "lots"][..], "lots"),
            (
                &[
                    "--task-input-threshold-kb",
                    "5",
                    "--task-output-threshold-kb",
                    "20",
                    "--max-task-payload-kb",
                    "10",
                ][..],
                "--task-output-threshold-kb 20",
            ),
            (
                &["--task-input-threshold-kb", "20000"][..],
                "--max-task-payload-kb 10240",
            ),
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(needle), "{e}");
        }
    }
}
