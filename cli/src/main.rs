//! `joint`: a command-line MessagePack-RPC client and demo server, built on the joint library.

mod bench;
mod call;
mod demo;
mod json;
mod methods;
mod serve;
mod signals;
mod stream_call;
mod streams;

use std::process::ExitCode;
use std::time::Duration;

use call::{CallParams, Target};

/// The peer answered with an error (or `joint demo` found something unexpected).
pub const EXIT_REMOTE: u8 = 1;
/// No answer: connection failure, timeout, or the peer went away.
pub const EXIT_FAILED: u8 = 2;
/// Bad command line (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

const DEFAULT_TIMEOUT_MS: u64 = 10_000;

const MAIN_HELP: &str = "\
joint: MessagePack-RPC from the command line

USAGE:
    joint serve [--listen URI]... [--stdio]     run the demo server (limits: joint help serve)
    joint call URI METHOD [ARG]... [OPTIONS]    call a method, print the result as JSON
                                                (--stream, --send-json-lines: streaming)
    joint notify URI METHOD [ARG]... [OPTIONS]  send a notification
    joint demo                                  a server and a client in one process
    joint help [COMMAND]                        help on a command

ADDRESSES (URI):
    tcp://HOST:PORT      e.g. tcp://127.0.0.1:6000, tcp://[::1]:6000, tcp://localhost:6000
    tls://HOST:PORT      TCP with TLS 1.2/1.3; the server's certificate must name HOST
                         (see --tls-* in `joint help serve` and `joint help call`)
    unix:///PATH         a Unix domain socket
    exec:PROGRAM ARG...  (call/notify) run a program and talk over its stdin/stdout, e.g.
                         'exec:nvim --embed --headless --clean'; words are split on blanks,
                         with '...', \"...\" and \\ quoting (no other shell syntax)

VALUES:
    Each ARG is a JSON value; an ARG that is not valid JSON is sent as a string, so
    `joint call URI echo hello` sends \"hello\" (quote JSON strings for the shell: '\"1+2\"').
    Integers keep their exact value in the i64 and u64 ranges; other numbers are float64.
    MessagePack values JSON has no form for are written (and may be given) as one-key objects:
        bin                          {\"$bin\":\"<base64>\"}
        ext                          {\"$ext\":[TYPE,\"<base64>\"]}
        map with non-string keys     {\"$map\":[[KEY,VALUE],...]}
        str that is not valid UTF-8  {\"$str\":\"<base64 of the raw bytes>\"}
        NaN, infinities              {\"$float\":\"nan\"}, {\"$float\":\"inf\"}, {\"$float\":\"-inf\"}
    A map whose only key is one of those names, or with a repeated key, prints in the $map
    form too, so printed output given back as input is the same MessagePack. On input, only
    an object with exactly one key that is one of those names is a special form.

EXIT STATUS:
    0 success; 1 the peer answered with an error; 2 no answer (connection failure, timeout,
    peer closed), the server could not start, or streaming needs the joint extension and
    the peer is a stock peer; 64 usage error (also: unreadable --send-json-lines FILE, or
    a line of it that is not JSON).

Set JOINT_LOG=debug (or info, warn, error) to see the library's log on stderr.
";

const SERVE_HELP: &str = "\
joint serve [--listen URI]... [--stdio] [--tls-cert FILE --tls-key FILE] [LIMITS]

Run the demo server until SIGINT or SIGTERM. Then it stops listening (removing its Unix
socket files), refuses new requests, gives those already received up to 2 s to be answered
(a second signal cuts this short), closes its connections and exits 0. Prints
`listening on URI` on stderr for each listener, with the actual port (tcp://127.0.0.1:0
picks a free one).

OPTIONS:
    --listen URI   listen on URI (tcp://HOST:PORT, tls://HOST:PORT or unix:///PATH);
                   may be repeated; default tcp://127.0.0.1:6000 (unless --stdio is
                   given alone)
    --stdio        also serve one connection over stdin/stdout, and exit when it closes

TLS (for tls://HOST:PORT listeners):
    --tls-cert FILE       the certificate chain (PEM, leaf first) the server presents
    --tls-key FILE        its private key (PEM: PKCS#8, PKCS#1 or SEC1)
    --tls-client-ca FILE  require a client certificate signed by a CA in FILE (PEM);
                          clients without one are closed after a failed handshake
    A connection whose handshake fails, or that sends plaintext, is closed alone; the
    cause is logged at info level (JOINT_LOG=info).

LIMITS (every byte and fd the server holds for its peers is bounded by one of these):
    --memory-budget-mib N     memory all connections together may make it hold: input,
                              queued output, requests in progress (default 256). When it
                              is spent, connections holding more than 64 KiB are not read
                              until memory comes back; an answer that does not fit is
                              refused with error code 10 (resource exhausted)
    --max-connections N       open connections; further ones are accepted and closed at
                              once (default 4096)
    --message-timeout-ms MS   a message must arrive whole within MS of its first byte, and
                              queued output must make progress within MS, or the
                              connection closes (default 30000; 0: no limit)
    --idle-timeout-ms MS      close connections quiet for MS with nothing pending
                              (default 0: never)
    --linger-ms MS            after a client closes its end, how long its requests may
                              still be answered before they are cancelled (default 5000)
    --listen-backlog N        connections the kernel queues per listener (default 1024)

METHODS:
    echo(x)                    returns x
    add(a, b)                  a + b; integers stay integers (a sum outside the i64 and
                               u64 ranges is an error), a float makes it a float
    sleep(ms)                  returns nil after ms milliseconds (other calls go on)
    blob(n)                    n bytes as bin, byte i being i % 256
    last_notification()        [method, params] of the last notification received, or nil
    callback(method, params)   calls method(params) on the caller over the same connection
                               and returns its result (or its error)
  streaming (joint extension; see `joint help call`, --stream and --send-json-lines):
    count(n)                   streams 0, 1, ..., n-1, then returns n
    download(size, chunk)      streams size bytes as bin items of chunk bytes (the last may
                               be shorter), byte i being i % 251, then returns size
    sum()                      adds the numbers streamed in (integers stay integers, a float
                               makes it a float) and returns the total
    upload()                   takes bin chunks streamed in; returns [total_bytes, crc32]
                               (CRC-32/IEEE, as zlib's crc32)
Streaming methods wait for the caller's credit (flow control) and stop when the call is
cancelled or its deadline passes. A stock MessagePack-RPC client, which cannot stream, gets
count's and download's items as one array, and sum and upload answered at once as if
nothing was streamed in: 0 and [0, 0].
Methods also take their params by name (a map, see `joint help call` --kw).
Errors are [code, message]: 1 invalid params, 2 no such method, 4 too large.
";

const CALL_HELP: &str = "\
joint call URI METHOD [ARG]... [--timeout MS] [--retry-ms MS] [--kw KEY=JSON]... [--stream]
                               [--output FILE] [--send-json-lines FILE] [--tls-*]

Call METHOD with the ARGs as its params array and print the result as one line of JSON on
stdout. A remote error is printed on stderr (a readable message, then the error object as
JSON) and the exit status is 1; a timeout or connection failure exits 2.
While waiting, joint serves echo and add itself, so a server can call back into it:
    joint call tcp://127.0.0.1:6000 callback '\"add\"' '[2,3]'     prints 5

OPTIONS:
    --timeout MS    give up after MS milliseconds (default 10000; 0 waits forever); with
                    --retry-ms, counted from when the connection is up
    --retry-ms MS   keep trying to connect for up to MS milliseconds (a server that is
                    still starting, or restarting), with backoff from 100 ms to 1 s
                    between attempts; exits 2 if none succeeds within MS. Not for exec:
                    (default: one attempt)
    --kw KEY=JSON   send keyword params (a map) instead of an array; may be repeated;
                    cannot be mixed with ARGs
    --              every word after this is an ARG (for ARGs that begin with -)

TLS (for tls://HOST:PORT addresses):
    --tls-ca FILE            trust the CA certificates in FILE (PEM) instead of the
                             system's
    --tls-cert FILE, --tls-key FILE
                             present this certificate chain and key when the server
                             asks for one (mutual TLS)
    --tls-server-name NAME   the name the server's certificate must carry, instead of
                             HOST
    A failed handshake exits 2 with its cause, e.g. \"the server's certificate is not
    signed by a trusted CA (unknown issuer)\".

STREAMING (the joint extension, spoken by `joint serve` and other joint peers):
    --stream        print each item the method streams as one line of JSON as it arrives,
                    then the result as the last line, as {\"result\":VALUE}; every line
                    before the last is an item:
                        $ joint call --stream tcp://127.0.0.1:6000 count 3
                        0
                        1
                        2
                        {\"result\":3}
                    (`tail -n 1` is the result, `sed '$d'` the items.) A stock
                    MessagePack-RPC peer just answers: one {\"result\":VALUE} line.
    --output FILE   with --stream: write the bytes of each bin item to FILE instead of
                    printing it (other items are still printed), e.g. to download a file:
                        $ joint call --stream --output big.bin tcp://127.0.0.1:6000 \\
                              download 1073741824 1048576
                    Progress goes to stderr when it is a terminal.
    --send-json-lines FILE
                    stream the lines of FILE (- for stdin) into the call, one JSON value
                    per line (blank lines are skipped), as fast as the callee accepts
                    them, then end the input; print the result like a plain call (with
                    --stream too, both ways: the items, then {\"result\":VALUE}):
                        $ seq 100 | joint call --send-json-lines - tcp://127.0.0.1:6000 sum
                        5050
                    A stock peer cannot take input: joint exits 2 without calling METHOD.
                    A line that is not JSON cancels the call and exits 64.
    With either option, --timeout covers the whole call, streaming included, and is also
    the callee's deadline: a joint callee stops when it passes. Without them the call is
    a plain request, which a streaming method answers the stock way (count 3 returns
    [0,1,2]).

See `joint help` for addresses and how JSON maps to MessagePack.
";

const NOTIFY_HELP: &str = "\
joint notify URI METHOD [ARG]... [--timeout MS] [--retry-ms MS] [--kw KEY=JSON]... [--tls-*]

Send a notification, then make sure the peer has read it: joint sends a `joint.sync`
request after it and waits for any answer (\"no such method\" will do), which the peer
sends only after handling the notification. Exits 0 once answered, 2 if the connection
fails or no answer comes within the timeout (default 10000 ms). Options as for `call`.
";

const DEMO_HELP: &str = "\
joint demo

Start a server (its own context, on a thread, on tcp://127.0.0.1:0) and a client in one
process and show calls, pipelining, a notification, errors, a timeout, a callback from
the server into the client, and streaming (joint extension): items streamed out, values
streamed in with flow control, a cancelled stream. Exits 0 if everything happened as
expected, 1 otherwise.
";

fn main() -> ExitCode {
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(a) => args.push(a),
            Err(bad) => return usage_error(None, &format!("argument {bad:?} is not valid UTF-8")),
        }
    }
    run(&args)
}

fn run(args: &[String]) -> ExitCode {
    let Some((command, rest)) = args.split_first() else {
        return usage_error(None, "no command given");
    };
    let wants_help = rest.iter().take_while(|a| *a != "--").any(|a| a == "--help" || a == "-h");
    match command.as_str() {
        "-h" | "--help" => print_help(MAIN_HELP),
        "-V" | "--version" => {
            println!("joint {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        "help" => match rest {
            [] => print_help(MAIN_HELP),
            [cmd] => match command_help(cmd) {
                Some(text) => print_help(text),
                None => usage_error(None, &format!("no command named {cmd:?}")),
            },
            _ => usage_error(None, "help takes at most one command name"),
        },
        cmd @ ("serve" | "call" | "notify" | "demo") if wants_help => print_help(command_help(cmd).unwrap_or(MAIN_HELP)),
        "serve" => match parse_serve(rest) {
            Ok(options) => serve::run(&options),
            Err(e) => usage_error(Some("serve"), &e),
        },
        "call" => match parse_call(rest) {
            Ok(options) => call::run_call(&options),
            Err(e) => usage_error(Some("call"), &e),
        },
        "notify" => match parse_call(rest) {
            Ok(options) if options.stream || options.send_lines.is_some() || options.output.is_some() => {
                usage_error(Some("notify"), "--stream and --send-json-lines are for calls, not notifications")
            }
            Ok(options) => call::run_notify(&options),
            Err(e) => usage_error(Some("notify"), &e),
        },
        "bench" => bench::run_from_words(rest),
        "demo" if rest.is_empty() => demo::run(),
        "demo" => usage_error(Some("demo"), "demo takes no arguments"),
        other => usage_error(None, &format!("unknown command {other:?}")),
    }
}

fn command_help(command: &str) -> Option<&'static str> {
    match command {
        "serve" => Some(SERVE_HELP),
        "call" => Some(CALL_HELP),
        "notify" => Some(NOTIFY_HELP),
        "demo" => Some(DEMO_HELP),
        _ => None,
    }
}

fn print_help(text: &str) -> ExitCode {
    print!("{text}");
    ExitCode::SUCCESS
}

fn usage_error(command: Option<&str>, message: &str) -> ExitCode {
    eprintln!("joint: {message}");
    match command.and_then(command_help) {
        Some(help) => eprintln!("usage: {}\nRun 'joint help {}' for details.", help.lines().next().unwrap_or_default(), command.unwrap_or_default()),
        None => eprintln!("usage: joint serve|call|notify|demo|help ...\nRun 'joint --help' for details."),
    }
    ExitCode::from(EXIT_USAGE)
}

/// The value of an option given as `--name VALUE` or `--name=VALUE`.
fn option_value<'a>(name: &str, arg: &'a str, rest: &mut impl Iterator<Item = &'a String>) -> Result<Option<&'a str>, String> {
    if arg == name {
        return rest.next().map(|v| Some(v.as_str())).ok_or_else(|| format!("{name} needs a value"));
    }
    Ok(arg.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
}

/// Whether a word is meant as an option (ARGs such as -1 or -inf are not).
fn looks_like_option(arg: &str) -> bool {
    arg.starts_with("--") || (arg.starts_with('-') && arg[1..].starts_with(|c: char| c.is_ascii_alphabetic()))
}

/// `--tls-cert FILE` and `--tls-key FILE`, which come together or not at all.
fn cert_and_key(cert: Option<String>, key: Option<String>) -> Result<Option<(String, String)>, String> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        _ => Err("--tls-cert and --tls-key go together".into()),
    }
}

fn parse_serve(args: &[String]) -> Result<serve::Options, String> {
    let mut options = serve::Options::default();
    let (mut tls_cert, mut tls_key) = (None, None);
    let mut iter = args.iter();
    fn number<T>(name: &str, v: &str, min: T) -> Result<T, String>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        match v.parse::<T>() {
            Ok(n) if n >= min => Ok(n),
            _ => Err(format!("{name} needs a whole number of at least {min}, not {v:?}")),
        }
    }
    while let Some(arg) = iter.next() {
        if arg == "--stdio" {
            options.stdio = true;
        } else if let Some(v) = option_value("--memory-budget-mib", arg, &mut iter)? {
            options.memory_budget_mib = Some(number("--memory-budget-mib", v, 1usize)?);
        } else if let Some(v) = option_value("--max-connections", arg, &mut iter)? {
            options.max_connections = Some(number("--max-connections", v, 1usize)?);
        } else if let Some(v) = option_value("--message-timeout-ms", arg, &mut iter)? {
            options.message_timeout_ms = Some(number("--message-timeout-ms", v, 0u64)?);
        } else if let Some(v) = option_value("--idle-timeout-ms", arg, &mut iter)? {
            options.idle_timeout_ms = Some(number("--idle-timeout-ms", v, 0u64)?);
        } else if let Some(v) = option_value("--linger-ms", arg, &mut iter)? {
            options.linger_ms = Some(number("--linger-ms", v, 0u64)?);
        } else if let Some(v) = option_value("--listen-backlog", arg, &mut iter)? {
            options.listen_backlog = Some(number("--listen-backlog", v, 1u32)?);
        } else if let Some(file) = option_value("--tls-cert", arg, &mut iter)? {
            tls_cert = Some(file.to_string());
        } else if let Some(file) = option_value("--tls-key", arg, &mut iter)? {
            tls_key = Some(file.to_string());
        } else if let Some(file) = option_value("--tls-client-ca", arg, &mut iter)? {
            options.tls_client_ca = Some(file.to_string());
        } else if let Some(uri) = option_value("--listen", arg, &mut iter)? {
            if !(uri.starts_with("tcp://") || uri.starts_with("unix:") || uri.starts_with("tls://")) {
                return Err(format!("cannot listen on {uri:?}: expected tcp://HOST:PORT, tls://HOST:PORT or unix:///PATH"));
            }
            options.listen.push(uri.to_string());
        } else if looks_like_option(arg) {
            return Err(format!("unknown option {arg:?}"));
        } else {
            return Err(format!("unexpected argument {arg:?}"));
        }
    }
    let tls_listeners = options.listen.iter().any(|uri| uri.starts_with("tls://"));
    options.tls_cert = cert_and_key(tls_cert, tls_key)?;
    match (tls_listeners, options.tls_cert.is_some()) {
        (true, false) => return Err("a tls:// listener needs --tls-cert FILE and --tls-key FILE".into()),
        (false, true) => return Err("--tls-cert is for tls:// listeners, and no --listen is one".into()),
        _ if options.tls_client_ca.is_some() && !tls_listeners => {
            return Err("--tls-client-ca is for tls:// listeners, and no --listen is one".into())
        }
        _ => {}
    }
    Ok(options)
}

fn parse_call(args: &[String]) -> Result<call::Options, String> {
    let mut words: Vec<&str> = Vec::new();
    let mut kwargs: Vec<(String, rmpv::Value)> = Vec::new();
    let mut timeout_ms = DEFAULT_TIMEOUT_MS;
    let mut retry = None;
    let mut stream = false;
    let mut send_lines: Option<String> = None;
    let mut output: Option<String> = None;
    let mut tls = call::TlsOptions::default();
    let (mut tls_cert, mut tls_key) = (None, None);
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            words.extend(iter.by_ref().map(String::as_str));
        } else if arg == "--stream" {
            stream = true;
        } else if let Some(file) = option_value("--send-json-lines", arg, &mut iter)? {
            if send_lines.is_some() {
                return Err("--send-json-lines is given twice".into());
            }
            if file.is_empty() {
                return Err("--send-json-lines needs a FILE (- for stdin)".into());
            }
            send_lines = Some(file.to_string());
        } else if let Some(file) = option_value("--output", arg, &mut iter)? {
            if file.is_empty() {
                return Err("--output needs a FILE".into());
            }
            output = Some(file.to_string());
        } else if let Some(file) = option_value("--tls-ca", arg, &mut iter)? {
            tls.ca = Some(file.to_string());
        } else if let Some(file) = option_value("--tls-cert", arg, &mut iter)? {
            tls_cert = Some(file.to_string());
        } else if let Some(file) = option_value("--tls-key", arg, &mut iter)? {
            tls_key = Some(file.to_string());
        } else if let Some(name) = option_value("--tls-server-name", arg, &mut iter)? {
            tls.server_name = Some(name.to_string());
        } else if let Some(ms) = option_value("--retry-ms", arg, &mut iter)? {
            let ms: u64 = ms
                .parse()
                .ok()
                .filter(|ms| *ms > 0)
                .ok_or_else(|| format!("--retry-ms needs a positive whole number of milliseconds, not {ms:?}"))?;
            retry = Some(Duration::from_millis(ms));
        } else if let Some(ms) = option_value("--timeout", arg, &mut iter)? {
            timeout_ms = ms.parse().map_err(|_| format!("--timeout needs a whole number of milliseconds, not {ms:?}"))?;
        } else if let Some(kw) = option_value("--kw", arg, &mut iter)? {
            let (key, value) = kw.split_once('=').ok_or_else(|| format!("--kw needs KEY=JSON, not {kw:?}"))?;
            if key.is_empty() {
                return Err(format!("--kw needs a key before '=' in {kw:?}"));
            }
            if kwargs.iter().any(|(k, _)| k == key) {
                return Err(format!("--kw {key} is given twice"));
            }
            let value = json::parse_arg(value).map_err(|e| format!("--kw {key}: {e}"))?;
            kwargs.push((key.to_string(), value));
        } else if looks_like_option(arg) {
            return Err(format!("unknown option {arg:?} (put ARGs that begin with - after --)"));
        } else {
            words.push(arg);
        }
    }
    let [uri, method, rest @ ..] = words.as_slice() else {
        return Err("needs a URI and a METHOD".into());
    };
    let target = Target::parse(uri)?;
    tls.cert = cert_and_key(tls_cert, tls_key)?;
    if !tls.is_empty() && !matches!(target, Target::Tls(_)) {
        return Err(format!("the --tls-* options are for tls:// addresses, not {uri:?}"));
    }
    let params = if kwargs.is_empty() {
        let values = rest.iter().enumerate().map(|(i, a)| json::parse_arg(a).map_err(|e| format!("argument {}: {e}", i + 1)));
        CallParams::Positional(values.collect::<Result<_, _>>()?)
    } else if rest.is_empty() {
        CallParams::Keyword(kwargs)
    } else {
        return Err("--kw cannot be combined with positional ARGs".into());
    };
    let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
    if output.is_some() && !stream {
        return Err("--output needs --stream (it receives the streamed bin items)".into());
    }
    if retry.is_some() && matches!(target, Target::Exec(_)) {
        return Err("--retry-ms is for network and Unix socket addresses, not exec:".into());
    }
    Ok(call::Options { target, uri: uri.to_string(), method: method.to_string(), params, timeout, retry, stream, send_lines, output, tls })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_call_lines() {
        let o = parse_call(&strings(&["tcp://h:1", "add", "1", "-2", "--timeout", "50", "x"])).unwrap();
        assert_eq!(o.method, "add");
        assert_eq!(o.params, CallParams::Positional(vec![1.into(), (-2).into(), "x".into()]));
        assert_eq!(o.timeout, Some(Duration::from_millis(50)));
        let o = parse_call(&strings(&["tcp://h:1", "m", "--kw", "a=1", "--kw=b=\"x=y\"", "--timeout=0"])).unwrap();
        assert_eq!(o.params, CallParams::Keyword(vec![("a".into(), 1.into()), ("b".into(), "x=y".into())]));
        assert_eq!(o.timeout, None);
        let o = parse_call(&strings(&["tcp://h:1", "m", "--", "--kw", "-x"])).unwrap();
        assert_eq!(o.params, CallParams::Positional(vec!["--kw".into(), "-x".into()]));
        assert!(!o.stream && o.send_lines.is_none());
        let o = parse_call(&strings(&["--stream", "tcp://h:1", "m", "--send-json-lines", "-", "1"])).unwrap();
        assert!(o.stream);
        assert_eq!(o.send_lines.as_deref(), Some("-"));
        assert_eq!(o.params, CallParams::Positional(vec![1.into()]));
        let o = parse_call(&strings(&["--send-json-lines=in.jsonl", "tcp://h:1", "m"])).unwrap();
        assert_eq!(o.send_lines.as_deref(), Some("in.jsonl"));
        // After --, --stream is an ARG.
        let o = parse_call(&strings(&["tcp://h:1", "m", "--", "--stream"])).unwrap();
        assert!(!o.stream);
        let o = parse_call(&strings(&["tls://h:1", "m", "--tls-ca", "ca.pem", "--tls-server-name=x", "--tls-cert", "c", "--tls-key", "k"])).unwrap();
        assert_eq!(o.target, Target::Tls("tls://h:1".into()));
        assert_eq!(o.tls, call::TlsOptions { ca: Some("ca.pem".into()), cert: Some(("c".into(), "k".into())), server_name: Some("x".into()) });
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
            &["tcp://h:1", "m", "-x"],
            &["ftp://h:1", "m"],
            &["tcp://h:1", "m", r#"{"$bin":"!"}"#],
            &["tcp://h:1", "m", "--tls-ca", "ca.pem"],
            &["tls://h:1", "m", "--tls-cert", "c.pem"],
        ] {
            assert!(parse_call(&strings(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_serve_lines() {
        let o = parse_serve(&strings(&["--listen", "tcp://127.0.0.1:0", "--listen=unix:///tmp/x", "--stdio"])).unwrap();
        assert_eq!(o.listen, ["tcp://127.0.0.1:0", "unix:///tmp/x"]);
        assert!(o.stdio);
        assert!(parse_serve(&strings(&["--listen"])).is_err());
        let o =
            parse_serve(&strings(&["--memory-budget-mib", "16", "--max-connections=3", "--message-timeout-ms", "0", "--linger-ms", "0"])).unwrap();
        let c = o.config();
        assert_eq!((c.memory_budget, c.max_connections, c.message_timeout, c.linger), (16 << 20, 3, None, std::time::Duration::ZERO));
        assert!(parse_serve(&strings(&["--memory-budget-mib", "0"])).is_err());
        assert!(parse_serve(&strings(&["--max-connections", "x"])).is_err());
        assert!(parse_serve(&strings(&["--listen", "http://x"])).is_err());
        assert!(parse_serve(&strings(&["extra"])).is_err());
        let o = parse_serve(&strings(&["--listen", "tls://[::1]:0", "--tls-cert", "c.pem", "--tls-key=k.pem", "--tls-client-ca", "ca.pem"])).unwrap();
        assert_eq!(o.tls_cert, Some(("c.pem".into(), "k.pem".into())));
        assert_eq!(o.tls_client_ca.as_deref(), Some("ca.pem"));
        assert!(parse_serve(&strings(&["--listen", "tls://[::1]:0", "--tls-key", "k.pem"])).is_err());
    }
}
