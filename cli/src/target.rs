//! Addresses on the command line: what `joint call`, `notify`, `bench` and `tap` connect to, and
//! what `joint serve` listens on. Their syntax is checked here, before anything is opened, so
//! every malformed address is a usage error (exit 64); a host name that does not resolve or a
//! peer that is not there is found when connecting (exit 2).

use joint::reactor::{ConnId, Context, TlsConfig};

/// Where to connect, with the URI normalised (a bare path becomes `unix://PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `tcp://HOST:PORT`, `udp://HOST:PORT` or `unix:///path`, as the library takes it.
    Socket(String),
    /// `tls://HOST:PORT`.
    Tls(String),
    /// `exec:PROGRAM ARG...`: a child process spoken to over its stdin/stdout.
    Exec(Vec<String>),
}

/// What every address may be, for error messages.
pub const ADDRESS_FORMS: &str = "tcp://HOST:PORT, tls://HOST:PORT, udp://HOST:PORT, unix:///PATH (or a path containing '/') or exec:PROGRAM ARG...";

impl Target {
    pub fn parse(uri: &str) -> Result<Target, String> {
        if let Some(command) = uri.strip_prefix("exec:") {
            let argv = split_command(command)?;
            if argv.is_empty() {
                return Err("exec: needs a program to run, as in 'exec:nvim --embed'".into());
            }
            return Ok(Target::Exec(argv));
        }
        let uri = normalize(uri)?;
        Ok(if uri.starts_with("tls://") { Target::Tls(uri) } else { Target::Socket(uri) })
    }

    /// The URI the library is given (None for `exec:`).
    pub fn uri(&self) -> Option<&str> {
        match self {
            Target::Socket(uri) | Target::Tls(uri) => Some(uri),
            Target::Exec(_) => None,
        }
    }

    pub(crate) fn open(&self, ctx: &Context, tls: &TlsOptions) -> joint::error::Result<ConnId> {
        match self {
            Target::Socket(uri) => ctx.connect(uri),
            Target::Tls(uri) => ctx.connect_tls(uri, &tls.config()?),
            Target::Exec(argv) => ctx.spawn(argv),
        }
    }
}

/// Check a socket address's syntax and give it in the form the library takes: `tcp://`,
/// `tls://` and `udp://` need HOST:PORT (an IPv6 host in brackets), `unix:` a path; a word
/// with a '/' and no scheme is a Unix socket path (as Neovim prints them).
pub fn normalize(address: &str) -> Result<String, String> {
    let bad = |why: &str| format!("invalid address {address:?}: {why}");
    if let Some((scheme, rest)) = ["tcp://", "tls://", "udp://"].iter().find_map(|s| address.strip_prefix(s).map(|r| (*s, r))) {
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad(&format!("expected {scheme}HOST:PORT")))?;
        if port.parse::<u16>().is_err() {
            return Err(bad("the port must be a number from 0 to 65535"));
        }
        let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        match bracketed {
            Some(ip6) if ip6.parse::<std::net::Ipv6Addr>().is_err() => return Err(bad("what is in [...] is not an IPv6 address")),
            Some(_) => {}
            None if host.is_empty() => return Err(bad("missing host")),
            None if host.contains(':') => return Err(bad("an IPv6 host goes in brackets, as in tcp://[::1]:6000")),
            None if host.contains(['/', '[', ']', ' ']) => return Err(bad("the host is not a name or an IP address")),
            None => {}
        }
        return Ok(format!("{scheme}{rest}"));
    }
    if let Some(path) = address.strip_prefix("unix://").or_else(|| address.strip_prefix("unix:")) {
        let file = path.split_once('?').map_or(path, |(p, _)| p);
        if file.is_empty() {
            return Err(bad("missing path, as in unix:///tmp/app.sock"));
        }
        return Ok(address.to_string());
    }
    if address.contains("://") {
        return Err(bad(&format!("expected {ADDRESS_FORMS}")));
    }
    if address.contains('/') {
        return Ok(format!("unix://{address}"));
    }
    Err(bad(&format!("expected {ADDRESS_FORMS}")))
}

/// `--tls-ca`, `--tls-cert`/`--tls-key` and `--tls-server-name`, for `tls://` targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Trust these CAs instead of the system's.
    pub ca: Option<String>,
    /// A client certificate chain and its key, for servers that ask for one.
    pub cert: Option<(String, String)>,
    /// The name the server's certificate must carry, instead of the URI's host.
    pub server_name: Option<String>,
}

impl TlsOptions {
    pub fn is_empty(&self) -> bool {
        *self == TlsOptions::default()
    }

    pub(crate) fn config(&self) -> joint::error::Result<TlsConfig> {
        let mut tls = TlsConfig::new();
        if let Some(ca) = &self.ca {
            tls.set_ca_file(ca)?;
        }
        if let Some((cert, key)) = &self.cert {
            tls.set_certificate_files(cert, key)?;
        }
        if let Some(name) = &self.server_name {
            tls.set_server_name(name)?;
        }
        Ok(tls)
    }
}

/// Split a command line into words: blanks separate words, '...' is literal, "..." allows \"
/// and \\, and a backslash outside quotes escapes the next character. No expansions.
pub fn split_command(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("exec: unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("exec: unterminated \" quote".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("exec: unterminated \" quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("exec: trailing backslash".into()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_commands() {
        assert_eq!(split_command("nvim --embed  --headless").unwrap(), ["nvim", "--embed", "--headless"]);
        assert_eq!(split_command(r#"sh -c 'echo "a b"' "x\"y" a\ b ''"#).unwrap(), ["sh", "-c", "echo \"a b\"", "x\"y", "a b", ""]);
        assert!(split_command("'open").is_err());
        assert!(split_command("\"open").is_err());
        assert!(split_command("x\\").is_err());
        assert!(split_command("  ").unwrap().is_empty());
    }

    #[test]
    fn parses_targets() {
        assert_eq!(Target::parse("tcp://127.0.0.1:1").unwrap(), Target::Socket("tcp://127.0.0.1:1".into()));
        assert_eq!(Target::parse("udp://[::1]:7").unwrap(), Target::Socket("udp://[::1]:7".into()));
        assert_eq!(Target::parse("tls://localhost:443/").unwrap(), Target::Tls("tls://localhost:443".into()));
        assert_eq!(Target::parse("unix:///tmp/s").unwrap(), Target::Socket("unix:///tmp/s".into()));
        assert_eq!(Target::parse("/tmp/nvim.sock").unwrap(), Target::Socket("unix:///tmp/nvim.sock".into()));
        assert_eq!(Target::parse("./app.sock").unwrap(), Target::Socket("unix://./app.sock".into()));
        assert_eq!(Target::parse("exec:nvim --embed").unwrap(), Target::Exec(vec!["nvim".into(), "--embed".into()]));
        for bad in [
            "exec:",
            "http://x",
            "tcp://h",
            "tcp://h:99999",
            "tcp://:1",
            "tcp://::1:5",
            "tcp://[zz]:1",
            "udp://h:x",
            "unix://",
            "unix:",
            "app.sock",
            "localhost:6000",
            "",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
    }
}
