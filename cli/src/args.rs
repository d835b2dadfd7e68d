//! The command line: every command, option and help text, declared with clap. Turning the
//! parsed words into each command's options (and the checks clap cannot express) is here too,
//! so the commands themselves never see a malformed request.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::call::{self, CallParams};
use crate::target::{self, Target, TlsOptions};
use crate::{json, serve};

const DEFAULT_TIMEOUT_MS: u64 = 10_000;

const GUIDE: &str = "\
ADDRESSES (URI):
    tcp://HOST:PORT      e.g. tcp://127.0.0.1:6000, tcp://[::1]:6000, tcp://localhost:6000
    tls://HOST:PORT      TCP with TLS 1.2/1.3; the server's certificate must name HOST
                         (see --tls-* in `joint help serve` and `joint help call`)
    udp://HOST:PORT      one message per datagram (at most 65507 bytes); no streaming
    unix:///PATH         a Unix domain socket; a bare path containing '/' (./app.sock,
                         /tmp/nvim.sock, as Neovim prints them) means the same
    exec:PROGRAM ARG...  (call, notify, bench) run a program and talk over its stdin/stdout,
                         e.g. 'exec:nvim --embed --headless --clean'; words are split on
                         blanks, with '...', \"...\" and \\ quoting (no other shell syntax)

VALUES:
    Each ARG is a JSON value. A bare word that does not begin like JSON is sent as a string
    (`joint call URI echo hello` sends \"hello\"); a word that begins with [, {, \", a digit
    or - must be valid JSON, or it is a usage error naming the argument (quote strings for
    the shell: '\"1+2\"'). Integers keep their exact value in the i64 and u64 ranges; other
    numbers are float64. MessagePack values JSON has no form for are written (and may be
    given) as one-key objects:
        bin                          {\"$bin\":\"<base64>\"}
        ext                          {\"$ext\":[TYPE,\"<base64>\"]}
        map with non-string keys     {\"$map\":[[KEY,VALUE],...]}
        str that is not valid UTF-8  {\"$str\":\"<base64 of the raw bytes>\"}
        NaN, infinities              {\"$float\":\"nan\"}, {\"$float\":\"inf\"}, {\"$float\":\"-inf\"}
    A map whose only key is one of those names, or with a repeated key, prints in the $map
    form too, so printed output given back as input is the same MessagePack. On input, only
    an object with exactly one key that is one of those names is a special form.

EXIT STATUS (every command):
    0   success
    1   the peer answered with an error (printed once on stderr, as the JSON it sent)
    2   no answer: connection failure (including a host name that does not resolve),
        timeout, the peer closed; the server could not start; streaming needs the joint
        extension and the peer is a stock peer
    64  usage error: an unknown option, a malformed address or ARG, an unreadable
        --send-json-lines FILE or a line of it that is not JSON

Set JOINT_LOG=debug (or info, warn, error) to see the library's log on stderr.";

/// `joint`: MessagePack-RPC from the command line.
#[derive(Parser, Debug)]
#[command(
    name = "joint",
    version,
    about = "MessagePack-RPC from the command line: call, serve, load-test and watch any MessagePack-RPC endpoint",
    after_help = "Run 'joint help COMMAND' for a command's options; 'joint --help' for addresses, values and exit codes.",
    after_long_help = GUIDE,
    arg_required_else_help = true,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the demo server (its methods and limits: joint help serve)
    #[command(
        long_about = "Run the demo server until SIGINT or SIGTERM. Then it stops listening (removing its Unix \
    socket files), refuses new requests, gives those already received up to 2 s to be answered (a second \
    signal cuts this short), closes its connections and exits 0. Prints `listening on URI` on stderr for \
    each listener, with the actual port (tcp://127.0.0.1:0 picks a free one).",
        after_long_help = SERVE_METHODS
    )]
    Serve(ServeArgs),
    /// Call a method and print the result as JSON
    #[command(
        long_about = "Call METHOD with the ARGs as its params array and print the result as one line of JSON on \
    stdout. A remote error is printed once on stderr, as the JSON error object the peer sent, and the \
    exit status is 1; a timeout or connection failure exits 2. While waiting, joint serves echo and add \
    itself, so a server can call back into it.",
        after_long_help = CALL_EXAMPLES
    )]
    Call(CallArgs),
    /// Send a notification and make sure the peer has read it
    #[command(long_about = NOTIFY_ABOUT)]
    Notify(NotifyArgs),
    /// A server and a client in one process: calls, errors, callbacks, streaming
    #[command(long_about = DEMO_ABOUT)]
    Demo,
    /// Load-test any MessagePack-RPC endpoint: calls/s and latency percentiles
    Bench(crate::bench::BenchArgs),
    /// A transparent proxy that prints every MessagePack-RPC message passing through it
    Tap(crate::tap::TapArgs),
    /// Print a completion script for a shell, e.g. `joint completions bash > /etc/bash_completion.d/joint`
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `joint man | man -l -`; with --dir, write joint.1
    /// and a joint-COMMAND.1 page per command into DIR (the build installs these)
    #[command(hide = true)]
    Man {
        /// Write all pages into this directory instead of printing joint.1
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

const NOTIFY_ABOUT: &str = "\
Send a notification, then make sure the peer has read it: joint sends a `joint.sync` request
after it and waits for any answer (\"no such method\" will do), which the peer sends only after
handling the notification. Exits 0 once answered, 2 if the connection fails or no answer comes
within the timeout.";

const DEMO_ABOUT: &str = "\
Start a server (its own context, on a thread, on tcp://127.0.0.1:0) and a client in one process
and show calls, pipelining, a notification, errors, a timeout, a callback from the server into the
client, and streaming (joint extension): items streamed out, values streamed in with flow control,
a cancelled stream. Exits 0 if everything happened as expected, 1 otherwise.";

/// What `call` and `notify` share: where, what, and how long to wait.
#[derive(Args, Debug)]
pub struct Request {
    /// Where to connect (see ADDRESSES in `joint --help`)
    #[arg(value_name = "URI")]
    pub uri: String,
    /// The method to call
    #[arg(value_name = "METHOD")]
    pub method: String,
    /// The params, each a JSON value or a bare word (sent as a string)
    #[arg(value_name = "ARG", allow_negative_numbers = true)]
    pub args: Vec<String>,
    /// Send keyword params (a map) instead of an array; may be repeated; not with ARGs
    #[arg(long = "kw", value_name = "KEY=JSON")]
    pub kw: Vec<String>,
    /// Give up after MS milliseconds (0 waits forever); with --retry-ms, counted from when
    /// the connection is up
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_TIMEOUT_MS)]
    pub timeout: u64,
    /// Keep trying to connect for up to MS milliseconds (a server that is still starting, or
    /// restarting), with backoff from 100 ms to 1 s between attempts; exits 2 if none
    /// succeeds within MS. Not for exec:
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub retry_ms: Option<u64>,
    #[command(flatten)]
    pub tls: TlsClientArgs,
}

const TLS_CLIENT: &str = "TLS (for tls://HOST:PORT addresses)";

/// TLS options of a client (for tls:// addresses).
#[derive(Args, Debug, Default)]
pub struct TlsClientArgs {
    /// Trust the CA certificates in FILE (PEM) instead of the system's
    #[arg(long, help_heading = TLS_CLIENT, value_name = "FILE")]
    pub tls_ca: Option<String>,
    /// Present this certificate chain (PEM) when the server asks for one (mutual TLS)
    #[arg(long, help_heading = TLS_CLIENT, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<String>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, help_heading = TLS_CLIENT, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<String>,
    /// The name the server's certificate must carry, instead of HOST
    #[arg(long, help_heading = TLS_CLIENT, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

impl TlsClientArgs {
    fn options(&self) -> TlsOptions {
        TlsOptions { ca: self.tls_ca.clone(), cert: self.tls_cert.clone().zip(self.tls_key.clone()), server_name: self.tls_server_name.clone() }
    }
}

#[derive(Args, Debug)]
pub struct CallArgs {
    #[command(flatten)]
    pub request: Request,
    /// Print the result (and a remote error) as indented JSON
    #[arg(long, conflicts_with = "stream")]
    pub pretty: bool,
    /// Print each item the method streams as one line of JSON as it arrives, then the result
    /// as {"result":VALUE} (joint extension; a stock peer just answers)
    #[arg(long, help_heading = "STREAMING (the joint extension)")]
    pub stream: bool,
    /// With --stream: write the bytes of each bin item to FILE instead of printing it
    #[arg(long, value_name = "FILE", requires = "stream", help_heading = "STREAMING (the joint extension)")]
    pub output: Option<String>,
    /// Stream the lines of FILE (- for stdin) into the call, one JSON value per line, as fast
    /// as the callee accepts them; a line that is not JSON cancels the call and exits 64
    #[arg(long, value_name = "FILE", help_heading = "STREAMING (the joint extension)")]
    pub send_json_lines: Option<String>,
}

const CALL_EXAMPLES: &str = "\
EXAMPLES:
    $ joint call tcp://127.0.0.1:6000 add 1 2
    3
    $ joint call /tmp/nvim.sock nvim_eval '\"1+2\"'
    3
    $ joint call tcp://127.0.0.1:6000 callback '\"add\"' '[2,3]'      (the server calls us back)
    5
    $ joint call --stream tcp://127.0.0.1:6000 count 3
    0
    1
    2
    {\"result\":3}
    (`tail -n 1` is the result, `sed '$d'` the items.)
    $ joint call --stream --output big.bin tcp://127.0.0.1:6000 download 1073741824 1048576
    $ seq 100 | joint call --send-json-lines - tcp://127.0.0.1:6000 sum
    5050

With --stream or --send-json-lines, --timeout covers the whole call, streaming included, and is
also the callee's deadline: a joint callee stops when it passes. Without them the call is a plain
request, which a streaming method answers the stock way (count 3 returns [0,1,2]). A stock peer
cannot take input: with --send-json-lines joint exits 2 without calling METHOD. Progress of
--output goes to stderr when it is a terminal.

See `joint --help` for addresses, how JSON maps to MessagePack, and exit codes.";

#[derive(Args, Debug)]
pub struct NotifyArgs {
    #[command(flatten)]
    pub request: Request,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Listen on URI (tcp://, tls://, udp://, unix:///PATH or a path); may be repeated;
    /// default tcp://127.0.0.1:6000 (unless --stdio is given alone)
    #[arg(long, value_name = "URI")]
    pub listen: Vec<String>,
    /// Also serve one connection over stdin/stdout, and exit when it closes
    #[arg(long)]
    pub stdio: bool,

    /// The certificate chain (PEM, leaf first) tls:// listeners present
    #[arg(long, value_name = "FILE", requires = "tls_key", help_heading = "TLS (for tls://HOST:PORT listeners)")]
    pub tls_cert: Option<String>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, value_name = "FILE", requires = "tls_cert", help_heading = "TLS (for tls://HOST:PORT listeners)")]
    pub tls_key: Option<String>,
    /// Require a client certificate signed by a CA in FILE (PEM); clients without one are
    /// closed after a failed handshake (the cause is logged at JOINT_LOG=info)
    #[arg(long, value_name = "FILE", help_heading = "TLS (for tls://HOST:PORT listeners)")]
    pub tls_client_ca: Option<String>,

    /// Memory all connections together may make the server hold: input, queued output,
    /// requests in progress (default 256). When it is spent, connections holding more than
    /// 64 KiB are not read until memory comes back; an answer that does not fit is refused
    /// with error code 10 (resource exhausted)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=(1 << 40)), help_heading = LIMITS)]
    pub memory_budget_mib: Option<u64>,
    /// Open connections; further ones are accepted and closed at once (default 4096)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = LIMITS)]
    pub max_connections: Option<u64>,
    /// A message must arrive whole within MS of its first byte, and queued output must make
    /// progress within MS, or the connection closes (default 30000; 0: no limit)
    #[arg(long, value_name = "MS", help_heading = LIMITS)]
    pub message_timeout_ms: Option<u64>,
    /// Close connections quiet for MS with nothing pending (default 0: never)
    #[arg(long, value_name = "MS", help_heading = LIMITS)]
    pub idle_timeout_ms: Option<u64>,
    /// After a client closes its end, how long its requests may still be answered before
    /// they are cancelled (default 5000)
    #[arg(long, value_name = "MS", help_heading = LIMITS)]
    pub linger_ms: Option<u64>,
    /// Connections the kernel queues per listener (default 1024)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = LIMITS)]
    pub listen_backlog: Option<u32>,
}

const LIMITS: &str = "LIMITS (every byte and fd the server holds for its peers is bounded by one of these)";

const SERVE_METHODS: &str = "\
METHODS:
    echo(x)                    returns x
    add(a, b)                  a + b; integers stay integers (a sum outside the i64 and u64
                               ranges is an error), a float makes it a float
    sleep(ms)                  returns nil after ms milliseconds (other calls go on)
    blob(n)                    n bytes as bin, byte i being i % 256
    last_notification()        [method, params] of the last notification received, or nil
    callback(method, params)   calls method(params) on the caller over the same connection and
                               returns its result (or its error)
  streaming (joint extension; see `joint help call`, --stream and --send-json-lines):
    count(n)                   streams 0, 1, ..., n-1, then returns n
    download(size, chunk)      streams size bytes as bin items of chunk bytes (the last may be
                               shorter), byte i being i % 251, then returns size
    sum()                      adds the numbers streamed in (integers stay integers, a float
                               makes it a float) and returns the total
    upload()                   takes bin chunks streamed in; returns [total_bytes, crc32]
                               (CRC-32/IEEE, as zlib's crc32)
Streaming methods wait for the caller's credit (flow control) and stop when the call is
cancelled or its deadline passes. A stock MessagePack-RPC client, which cannot stream, gets
count's and download's items as one array, and sum and upload answered at once as if nothing was
streamed in: 0 and [0, 0]. Over udp:// nothing streams. Methods also take their params by name
(a map, see `joint help call` --kw).
Errors are [code, message]: 1 invalid params, 2 no such method, 4 too large.";

impl ServeArgs {
    pub fn into_options(self) -> Result<serve::Options, String> {
        let listen = self.listen.iter().map(|uri| target::normalize(uri)).collect::<Result<Vec<_>, _>>()?;
        let tls_listeners = listen.iter().any(|uri| uri.starts_with("tls://"));
        let tls_cert = self.tls_cert.zip(self.tls_key);
        match (tls_listeners, tls_cert.is_some()) {
            (true, false) => return Err("a tls:// listener needs --tls-cert FILE and --tls-key FILE".into()),
            (false, true) => return Err("--tls-cert is for tls:// listeners, and no --listen is one".into()),
            _ if self.tls_client_ca.is_some() && !tls_listeners => {
                return Err("--tls-client-ca is for tls:// listeners, and no --listen is one".into())
            }
            _ => {}
        }
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(serve::Options {
            listen,
            stdio: self.stdio,
            memory_budget_mib: self.memory_budget_mib.map(to_usize),
            max_connections: self.max_connections.map(to_usize),
            message_timeout_ms: self.message_timeout_ms,
            idle_timeout_ms: self.idle_timeout_ms,
            linger_ms: self.linger_ms,
            listen_backlog: self.listen_backlog,
            tls_cert,
            tls_client_ca: self.tls_client_ca,
        })
    }
}

impl CallArgs {
    pub fn into_options(self) -> Result<call::Options, String> {
        let mut options = self.request.into_options()?;
        if let Some(file) = &self.send_json_lines {
            if file.is_empty() {
                return Err("--send-json-lines needs a FILE (- for stdin)".into());
            }
        }
        if matches!(&self.output, Some(file) if file.is_empty()) {
            return Err("--output needs a FILE".into());
        }
        options.stream = self.stream;
        options.send_lines = self.send_json_lines;
        options.output = self.output;
        options.pretty = self.pretty;
        Ok(options)
    }
}

impl Request {
    pub fn into_options(self) -> Result<call::Options, String> {
        let target = Target::parse(&self.uri)?;
        let tls = self.tls.options();
        if !tls.is_empty() && !matches!(target, Target::Tls(_)) {
            return Err(format!("the --tls-* options are for tls:// addresses, not {:?}", self.uri));
        }
        if self.retry_ms.is_some() && matches!(target, Target::Exec(_)) {
            return Err("--retry-ms is for network and Unix socket addresses, not exec:".into());
        }
        let params = call_params(&self.args, &self.kw)?;
        let uri = target.uri().unwrap_or(&self.uri).to_string();
        Ok(call::Options {
            target,
            uri,
            method: self.method,
            params,
            timeout: (self.timeout > 0).then(|| Duration::from_millis(self.timeout)),
            retry: self.retry_ms.map(Duration::from_millis),
            stream: false,
            send_lines: None,
            output: None,
            tls,
            pretty: false,
        })
    }
}

/// The params of `call`, `notify` and `bench`: the ARGs as an array, or `--kw KEY=JSON` pairs
/// as a map (not both).
pub(crate) fn call_params(args: &[String], kw: &[String]) -> Result<CallParams, String> {
    if kw.is_empty() {
        let values = args.iter().enumerate().map(|(i, a)| json::parse_arg(a).map_err(|e| format!("argument {}: {e}", i + 1)));
        Ok(CallParams::Positional(values.collect::<Result<_, _>>()?))
    } else if args.is_empty() {
        Ok(CallParams::Keyword(keyword_params(kw)?))
    } else {
        Err("--kw cannot be combined with positional ARGs".into())
    }
}

/// `--kw KEY=JSON`, each key once.
fn keyword_params(words: &[String]) -> Result<Vec<(String, rmpv::Value)>, String> {
    let mut pairs: Vec<(String, rmpv::Value)> = Vec::new();
    for kw in words {
        let (key, value) = kw.split_once('=').ok_or_else(|| format!("--kw needs KEY=JSON, not {kw:?}"))?;
        if key.is_empty() {
            return Err(format!("--kw needs a key before '=' in {kw:?}"));
        }
        if pairs.iter().any(|(k, _)| k == key) {
            return Err(format!("--kw {key} is given twice"));
        }
        let value = json::parse_arg(value).map_err(|e| format!("--kw {key}: {e}"))?;
        pairs.push((key.to_string(), value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `joint COMMAND WORDS...` as clap parses it.
    fn parse(command: &str, words: &[&str]) -> Result<Command, String> {
        let argv = ["joint", command].into_iter().chain(words.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.command).map_err(|e| e.to_string())
    }

    fn call(words: &[&str]) -> Result<call::Options, String> {
        match parse("call", words)? {
            Command::Call(args) => args.into_options(),
            other => panic!("{other:?}"),
        }
    }

    fn serve(words: &[&str]) -> Result<serve::Options, String> {
        match parse("serve", words)? {
            Command::Serve(args) => args.into_options(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_call_lines() {
        let o = call(&["tcp://h:1", "add", "1", "-2", "--timeout", "50", "x"]).unwrap();
        assert_eq!(o.method, "add");
        assert_eq!(o.params, CallParams::Positional(vec![1.into(), (-2).into(), "x".into()]));
        assert_eq!(o.timeout, Some(Duration::from_millis(50)));
        let o = call(&["tcp://h:1", "m", "--kw", "a=1", "--kw=b=\"x=y\"", "--timeout=0"]).unwrap();
        assert_eq!(o.params, CallParams::Keyword(vec![("a".into(), 1.into()), ("b".into(), "x=y".into())]));
        assert_eq!(o.timeout, None);
        let o = call(&["tcp://h:1", "m", "1", "--", "--kw"]).unwrap_err();
        assert!(o.contains("argument 2") && o.contains("begins like JSON"), "{o}");
        let o = call(&["tcp://h:1", "m", "--", "--stream"]).unwrap_err();
        assert!(o.contains("argument 1"), "{o}");
        let o = call(&["tcp://h:1", "m", "--", "-1.5"]).unwrap();
        assert_eq!(o.params, CallParams::Positional(vec![rmpv::Value::F64(-1.5)]));
        assert!(!o.stream && o.send_lines.is_none() && !o.pretty);
        let o = call(&["--stream", "tcp://h:1", "m", "--send-json-lines", "-", "1"]).unwrap();
        assert!(o.stream);
        assert_eq!(o.send_lines.as_deref(), Some("-"));
        assert_eq!(o.params, CallParams::Positional(vec![1.into()]));
        let o = call(&["--send-json-lines=in.jsonl", "tcp://h:1", "m", "--pretty"]).unwrap();
        assert_eq!(o.send_lines.as_deref(), Some("in.jsonl"));
        assert!(o.pretty);
        let o = call(&["tls://h:1", "m", "--tls-ca", "ca.pem", "--tls-server-name=x", "--tls-cert", "c", "--tls-key", "k"]).unwrap();
        assert_eq!(o.target, Target::Tls("tls://h:1".into()));
        assert_eq!(o.tls, TlsOptions { ca: Some("ca.pem".into()), cert: Some(("c".into(), "k".into())), server_name: Some("x".into()) });
        let o = call(&["/tmp/nvim.sock", "nvim_eval", "\"1\"", "--retry-ms", "5"]).unwrap();
        assert_eq!((o.target, o.uri.as_str()), (Target::Socket("unix:///tmp/nvim.sock".into()), "unix:///tmp/nvim.sock"));
        assert_eq!(o.retry, Some(Duration::from_millis(5)));
    }

    #[test]
    fn rejects_bad_call_lines() {
        for bad in [
            &["tcp://h:1"][..],
            &["tcp://h:1", "m", "--timeout"],
            &["tcp://h:1", "m", "--timeout", "soon"],
            &["tcp://h:1", "m", "--kw", "novalue"],
            &["tcp://h:1", "m", "--kw", "=1"],
            &["tcp://h:1", "m", "--kw", "a=1", "--kw", "a=2"],
            &["tcp://h:1", "m", "1", "--kw", "a=1"],
            &["tcp://h:1", "m", "--bogus"],
            &["tcp://h:1", "m", "--send-json-lines"],
            &["tcp://h:1", "m", "--send-json-lines="],
            &["tcp://h:1", "m", "--send-json-lines", "a", "--send-json-lines", "b"],
            &["tcp://h:1", "m", "--output", "f"],
            &["tcp://h:1", "m", "--stream", "--pretty"],
            &["tcp://h:1", "m", "-x"],
            &["tcp://h:1", "m", "[1,"],
            &["ftp://h:1", "m"],
            &["tcp://h", "m"],
            &["h:1", "m"],
            &["tcp://h:1", "m", r#"{"$bin":"!"}"#],
            &["tcp://h:1", "m", "--tls-ca", "ca.pem"],
            &["tls://h:1", "m", "--tls-cert", "c.pem"],
            &["exec:nvim", "m", "--retry-ms", "10"],
            &["tcp://h:1", "m", "--retry-ms", "0"],
        ] {
            assert!(call(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_serve_lines() {
        let o = serve(&["--listen", "tcp://127.0.0.1:0", "--listen=unix:///tmp/x", "--stdio", "--listen", "/tmp/y", "--listen", "udp://[::1]:0"])
            .unwrap();
        assert_eq!(o.listen, ["tcp://127.0.0.1:0", "unix:///tmp/x", "unix:///tmp/y", "udp://[::1]:0"]);
        assert!(o.stdio);
        assert!(serve(&["--listen"]).is_err());
        let o = serve(&["--memory-budget-mib", "16", "--max-connections=3", "--message-timeout-ms", "0", "--linger-ms", "0"]).unwrap();
        let c = o.config();
        assert_eq!((c.memory_budget, c.max_connections, c.message_timeout, c.linger), (16 << 20, 3, None, Duration::ZERO));
        for bad in [
            &["--memory-budget-mib", "0"][..],
            &["--max-connections", "x"],
            &["--listen", "http://x"],
            &["--listen", "tcp://x"],
            &["extra"],
            &["--listen", "tls://[::1]:0", "--tls-key", "k.pem"],
            &["--listen", "tcp://[::1]:0", "--tls-cert", "c.pem", "--tls-key", "k.pem"],
            &["--listen", "tls://[::1]:0"],
            &["--tls-client-ca", "ca.pem"],
        ] {
            assert!(serve(bad).is_err(), "{bad:?}");
        }
        let o = serve(&["--listen", "tls://[::1]:0", "--tls-cert", "c.pem", "--tls-key=k.pem", "--tls-client-ca", "ca.pem"]).unwrap();
        assert_eq!(o.tls_cert, Some(("c.pem".into(), "k.pem".into())));
        assert_eq!(o.tls_client_ca.as_deref(), Some("ca.pem"));
    }
}
