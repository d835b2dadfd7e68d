//! `joint bench`: a load generator for any MessagePack-RPC endpoint. This file holds the
//! command line; `load` drives the calls, `stats` counts and reports them.

mod load;
mod stats;

use std::process::ExitCode;
use std::time::Duration;

use crate::call::{Target, TlsOptions};
use crate::EXIT_USAGE;

/// Call METHOD over and over on one or more connections and report calls/s and latency.
///
/// Closed loop by default: each connection keeps --depth calls in flight, sending the next
/// as soon as one is answered. With --rate, open loop: calls are scheduled at fixed
/// intervals (spread over the connections, --depth at most in flight on each) and each
/// call's latency is measured from its scheduled send time, so a server that stalls or
/// cannot keep up shows in the latency instead of slowing the generator down.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
EXAMPLES:
    joint bench tcp://127.0.0.1:6000 add 1 2 --depth 256 --duration 5
    joint bench tcp://127.0.0.1:6000 echo '\"hi\"' --rate 2000 --connections 4 --json
    joint bench tcp://127.0.0.1:6666 nvim_eval '\"1\"' --calls 10000

OUTPUT:
    A table of calls, errors, seconds, calls/s and latency p50, p90, p99, p99.9 and max
    in milliseconds (HdrHistogram, 3 significant digits); with --json one line:
    {\"calls\",\"errors\",\"seconds\",\"calls_per_sec\",\"latency_ms\":{\"p50\",\"p90\",\"p99\",\"p999\",\"max\"}}.
    calls counts every answered or timed-out call sent after the warm-up, errors those that
    got an error response or timed out; latency covers the answered ones. A live progress
    line goes to stderr when it is a terminal.

EXIT STATUS:
    0 the run finished (even if calls failed: they are counted as errors); 2 a connection
    could not be made, or one was lost during the run (what was measured until then is
    still reported); 64 usage error.")]
pub struct BenchArgs {
    /// Where to connect (see ADDRESSES in `joint --help`)
    pub uri: String,

    /// The method to call.
    pub method: String,

    /// Its params, each a JSON value or a bare word (sent as a string), as
    /// for `joint call`. Encoded once and sent with every call.
    #[arg(allow_negative_numbers = true)]
    pub args: Vec<String>,

    /// Send keyword params (a map) instead of ARGs; may be repeated.
    #[arg(long = "kw", value_name = "KEY=JSON")]
    pub kwargs: Vec<String>,

    /// Calls in flight per connection.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub depth: u32,

    /// Connections, all to URI (each exec: connection runs its own program).
    #[arg(long, value_name = "C", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,

    /// Measure for S seconds (after the warm-up), then wait for the calls in flight
    /// [default: 5, unless --calls is given]
    #[arg(long, value_name = "S", value_parser = parse_seconds, conflicts_with = "calls")]
    pub duration: Option<Duration>,

    /// Measure exactly N calls (after the warm-up).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub calls: Option<u64>,

    /// Open loop: send R calls per second in all, at fixed intervals, and measure each
    /// call's latency from its scheduled send time. If the server cannot keep up, calls
    /// wait (never more than --depth in flight per connection) and their waiting counts
    /// in their latency; the rate achieved, calls/s, then falls below R. Calls of the
    /// --duration window still unsent one --timeout (+1 s) after it ends are given up and
    /// count as errors.
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Run for S seconds before measuring; those calls are not counted.
    #[arg(long, value_name = "S", value_parser = parse_seconds, default_value = "0")]
    pub warmup: Duration,

    /// A call unanswered after MS milliseconds counts as an error (0: wait forever; then
    /// calls still in flight 10 s after --duration ends are counted as errors).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub timeout: u64,

    /// Print the result as one line of JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// For tls:// addresses: trust the CA certificates in FILE (PEM) instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<String>,

    /// For tls:// addresses: the name the server's certificate must carry, instead of HOST.
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

/// What to run, checked and prepared: the params encoded once.
#[derive(Debug)]
pub(crate) struct Plan {
    pub target: Target,
    pub tls: TlsOptions,
    pub uri: String,
    pub method: String,
    pub params: Vec<u8>,
    pub depth: u32,
    pub connections: u32,
    pub stop: Stop,
    /// Time between two scheduled sends (open loop), or None (closed loop).
    pub interval: Option<Duration>,
    pub warmup: Duration,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    After(Duration),
    Calls(u64),
}

const DEFAULT_DURATION: Duration = Duration::from_secs(5);

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?}: seconds must be a finite number ≥ 0"))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1e9 => Ok(r),
        _ => Err(format!("{text:?} is not a rate: give calls per second, a number above 0 (at most 1e9)")),
    }
}

impl BenchArgs {
    fn plan(self) -> Result<Plan, String> {
        let target = Target::parse(&self.uri)?;
        if !matches!(target, Target::Tls(_)) && (self.tls_ca.is_some() || self.tls_server_name.is_some()) {
            return Err("--tls-ca and --tls-server-name are for tls:// addresses".into());
        }
        let params = crate::args::call_params(&self.args, &self.kwargs)?;
        let uri = target.uri().unwrap_or(&self.uri).to_string();
        let stop = match (self.calls, self.duration) {
            (Some(n), _) => Stop::Calls(n),
            (None, Some(d)) if d.is_zero() => return Err("--duration must be above 0".into()),
            (None, d) => Stop::After(d.unwrap_or(DEFAULT_DURATION)),
        };
        Ok(Plan {
            target,
            tls: TlsOptions { ca: self.tls_ca, cert: None, server_name: self.tls_server_name },
            uri,
            method: self.method,
            params: params.encode(),
            depth: self.depth,
            connections: self.connections,
            stop,
            interval: self.rate.map(|r| Duration::from_secs_f64(1.0 / r)),
            warmup: self.warmup,
            timeout: (self.timeout > 0).then(|| Duration::from_millis(self.timeout)),
        })
    }
}

/// `joint bench`, given parsed arguments.
pub fn run(args: BenchArgs) -> ExitCode {
    let json = args.json;
    match args.plan() {
        Ok(plan) => load::run(&plan, json),
        Err(e) => {
            eprintln!("joint: bench: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    #[command(name = "joint bench")]
    struct Standalone {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn plan(words: &[&str]) -> Result<Plan, String> {
        let argv = std::iter::once("joint bench").chain(words.iter().copied());
        Standalone::try_parse_from(argv).map_err(|e| e.to_string())?.args.plan()
    }

    #[test]
    fn builds_plans() {
        let p = plan(&["tcp://127.0.0.1:1", "add", "1", "-2", "--depth", "8", "--rate", "100"]).unwrap();
        assert_eq!(p.params, [0x92, 0x01, 0xfe]);
        assert_eq!((p.depth, p.connections, p.stop), (8, 1, Stop::After(DEFAULT_DURATION)));
        assert_eq!(p.interval, Some(Duration::from_millis(10)));
        let p = plan(&["tcp://h:1", "m", "--kw", "a=1", "--calls", "7", "--timeout", "0"]).unwrap();
        assert_eq!((p.params.as_slice(), p.stop, p.timeout), (&[0x81, 0xa1, b'a', 0x01][..], Stop::Calls(7), None));
        for bad in [
            &["tcp://h:1"][..],
            &["http://h:1", "m"],
            &["tcp://h:1", "m", "--depth", "0"],
            &["tcp://h:1", "m", "--rate", "0"],
            &["tcp://h:1", "m", "--rate", "-5"],
            &["tcp://h:1", "m", "--duration", "-1"],
            &["tcp://h:1", "m", "--duration", "0"],
            &["tcp://h:1", "m", "--calls", "5", "--duration", "1"],
            &["tcp://h:1", "m", "1", "--kw", "a=1"],
            &["tcp://h:1", "m", "--kw", "=1"],
            &["tcp://h:1", "m", "--tls-ca", "x.pem"],
            &["tcp://h:1", "m", r#"{"$bin":"!"}"#],
        ] {
            assert!(plan(bad).is_err(), "{bad:?}");
        }
    }
}
