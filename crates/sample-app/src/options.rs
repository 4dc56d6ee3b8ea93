//! Command-line flags of the sample app, each with an environment fallback (flag wins).

use std::net::IpAddr;

/// How the sample app behaves. Parsed by clap; `baton sample-app` reuses it as-is.
#[derive(Debug, Clone, PartialEq, clap::Parser)]
#[command(
    name = "sample-app",
    about = "Small HTTP/WebSocket app for testing deployments (used by baton's tests, demo and benchmark)",
    disable_version_flag = true
)]
pub struct SampleOptions {
    /// Port to listen on; 0 picks a free one (the bound address is printed either way).
    #[arg(long, env = "PORT", default_value_t = 0)]
    pub port: u16,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Version string this instance reports (body of `/` and the `X-Version` header).
    #[arg(long = "version", env = "BATON_VERSION", default_value = "v1")]
    pub app_version: String,

    /// Instance id for the `X-Instance` header; defaults to the bound port.
    #[arg(long, env = "SAMPLE_INSTANCE")]
    pub instance: Option<String>,

    /// Sleep this long before binding the port (simulates a slow boot).
    #[arg(long, env = "SAMPLE_STARTUP_DELAY_MS", default_value_t = 0)]
    pub startup_delay_ms: u64,

    /// Fraction (0.0-1.0) of `/` and `/slow` requests answered with 500.
    #[arg(long, env = "SAMPLE_ERROR_RATE", default_value_t = 0.0, value_parser = parse_fraction)]
    pub error_rate: f64,

    /// Extra latency added to every `/` request.
    #[arg(long, env = "SAMPLE_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,

    /// Start with `/health` answering 503 (`POST /admin/health?fail=0` clears it).
    #[arg(long, env = "SAMPLE_FAIL_HEALTH", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub fail_health: bool,

    /// Exit with status 3 this long after the port is bound (simulates a crash).
    #[arg(long, env = "SAMPLE_EXIT_AFTER_MS")]
    pub exit_after_ms: Option<u64>,

    /// Close keep-alive connections idle for this long (default: keep them open).
    #[arg(long, env = "SAMPLE_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,

    /// The SQLite file `GET /users` reads (`sample-app migrate --db FILE` creates it).
    #[arg(long, env = "SAMPLE_DB")]
    pub db: Option<std::path::PathBuf>,
}

/// Parses a fraction in `0.0..=1.0`.
fn parse_fraction(s: &str) -> Result<f64, String> {
    let value: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number; use a fraction such as 0.05"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{value} is outside 0.0..=1.0; use a fraction such as 0.05 for 5%"
        ))
    }
}

impl Default for SampleOptions {
    /// The same values as running with no flags and no environment.
    fn default() -> Self {
        Self {
            port: 0,
            host: IpAddr::from([127, 0, 0, 1]),
            app_version: "v1".to_owned(),
            instance: None,
            startup_delay_ms: 0,
            error_rate: 0.0,
            latency_ms: 0,
            fail_health: false,
            exit_after_ms: None,
            idle_timeout_ms: None,
            db: None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<SampleOptions, clap::Error> {
        SampleOptions::try_parse_from(std::iter::once("sample-app").chain(args.iter().copied()))
    }

    #[test]
    fn flags_parse() {
        let o = parse(&[
            "--port",
            "8081",
            "--host",
            "0.0.0.0",
            "--version",
            "v2",
            "--instance",
            "a",
            "--startup-delay-ms",
            "5",
            "--error-rate",
            "0.25",
            "--latency-ms",
            "7",
            "--fail-health",
            "--exit-after-ms",
            "9",
            "--idle-timeout-ms",
            "11",
        ])
        .unwrap();
        assert_eq!(o.port, 8081);
        assert_eq!(o.host.to_string(), "0.0.0.0");
        assert_eq!(o.app_version, "v2");
        assert_eq!(o.instance.as_deref(), Some("a"));
        assert_eq!((o.startup_delay_ms, o.latency_ms), (5, 7));
        assert_eq!(o.error_rate, 0.25);
        assert!(o.fail_health);
        assert_eq!((o.exit_after_ms, o.idle_timeout_ms), (Some(9), Some(11)));
    }

    #[test]
    fn fail_health_takes_an_optional_boolish_value() {
        assert!(parse(&["--fail-health"]).unwrap().fail_health);
        assert!(parse(&["--fail-health=yes"]).unwrap().fail_health);
        assert!(!parse(&["--fail-health=false"]).unwrap().fail_health);
    }

    #[test]
    fn version_flag_is_the_app_version_not_clap_s() {
        assert_eq!(parse(&["--version", "v9"]).unwrap().app_version, "v9");
    }

    #[test]
    fn rejects_bad_error_rate() {
        let err = parse(&["--error-rate", "1.5"]).unwrap_err().to_string();
        assert!(err.contains("outside 0.0..=1.0"), "{err}");
        assert!(parse(&["--error-rate", "lots"]).is_err());
    }
}
