//! Command-line flags of the `conductor-devserver` binary.

use clap::Parser;

use crate::auth::ApiKey;
use crate::faults::{Faults, parse_group_rate};
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
    /// Probability of a 500 for a group (poll, update, log, task, metadata, workflow, token, all).
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
}

impl Args {
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
            },
            sweep_interval_ms: self.sweep_interval_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Args::try_parse_from(std::iter::once("conductor-devserver").chain(args.iter().copied()))
            .map(Args::into_config)
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
    }

    #[test]
    fn bad_values_name_the_flag_and_value() {
        for (args, needle) in [
            (&["--fail-rate", "update=2"][..], "--fail-rate"),
            (&["--drop-rate", "bogus=0.1"][..], "bogus"),
            (&["--auth", "nocolon"][..], "--auth"),
            (&["--port", "99999"][..], "99999"),
            (&["--update-v2-missing-status", "500"][..], "500"),
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(needle), "{e}");
        }
    }
}
