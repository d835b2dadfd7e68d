//! The tap's output: one line per event, human-readable or JSON, written to stdout under its
//! lock so lines from different connections never mix.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::{Map, Value as Json};
use time::OffsetDateTime;

/// Lines are cut to this many characters when stdout is not a terminal (and not --full).
pub const PIPE_WIDTH: usize = 200;

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From the client that connected to the tap, to the upstream server.
    ToServer,
    /// From the server, back to the client.
    ToClient,
}

impl Dir {
    pub fn opposite(self) -> Dir {
        match self {
            Dir::ToServer => Dir::ToClient,
            Dir::ToClient => Dir::ToServer,
        }
    }

    fn json(self) -> &'static str {
        match self {
            Dir::ToServer => "c2s",
            Dir::ToClient => "s2c",
        }
    }

    fn arrow(self) -> &'static str {
        match self {
            Dir::ToServer => "->",
            Dir::ToClient => "<-",
        }
    }
}

/// One line of output.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub conn: u64,
    pub dir: Option<Dir>,
    pub kind: String,
    pub msgid: Option<u64>,
    pub method: Option<String>,
    pub latency: Option<Duration>,
    /// The message's size in bytes.
    pub size: Option<u64>,
    /// Named values (JSON as `joint call` prints them), in order.
    pub fields: Vec<(String, Json)>,
    /// The message was larger than the display limit: what the first value not shown is.
    pub cut: Option<String>,
}

impl Record {
    pub fn new(conn: u64, dir: Option<Dir>, kind: &str) -> Record {
        Record { conn, dir, kind: kind.to_string(), ..Record::default() }
    }

    pub fn with(mut self, name: &str, value: impl Into<Json>) -> Record {
        self.fields.push((name.to_string(), value.into()));
        self
    }
}

pub struct Printer {
    json: bool,
    /// None: print lines whole.
    width: Option<usize>,
}

impl Printer {
    pub fn new(json: bool, full: bool) -> Printer {
        let stdout = std::io::stdout();
        let width = if full || json {
            None
        } else if stdout.is_terminal() {
            Some(terminal_size::terminal_size_of(&stdout).map_or(80, |(w, _)| usize::from(w.0)))
        } else {
            Some(PIPE_WIDTH)
        };
        Printer { json, width }
    }

    /// Write one line. Blocks while stdout does (a slow reader slows the tap down); a closed
    /// stdout is ignored, so forwarding goes on.
    pub fn print(&self, record: &Record) {
        let now = OffsetDateTime::now_utc();
        let line = if self.json { json_line(now, record) } else { trim(human_line(now, record), self.width) };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}

fn json_line(now: OffsetDateTime, r: &Record) -> String {
    let mut object = Map::new();
    let time = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    object.insert("time".into(), time.into());
    object.insert("conn".into(), r.conn.into());
    if let Some(dir) = r.dir {
        object.insert("dir".into(), dir.json().into());
    }
    object.insert("kind".into(), r.kind.clone().into());
    if let Some(msgid) = r.msgid {
        object.insert("msgid".into(), msgid.into());
    }
    if let Some(method) = &r.method {
        object.insert("method".into(), method.clone().into());
    }
    for (name, value) in &r.fields {
        object.insert(name.clone(), value.clone());
    }
    if let Some(latency) = r.latency {
        object.insert("latency_ms".into(), Json::from((latency.as_secs_f64() * 1e6).round() / 1e3));
    }
    if let Some(size) = r.size {
        object.insert("size".into(), size.into());
    }
    if let Some(cut) = &r.cut {
        object.insert("cut".into(), cut.clone().into());
    }
    Json::Object(object).to_string()
}

fn human_line(now: OffsetDateTime, r: &Record) -> String {
    let mut line = format!("{:02}:{:02}:{:02}.{:03} #{}", now.hour(), now.minute(), now.second(), now.millisecond(), r.conn);
    if let Some(dir) = r.dir {
        line.push(' ');
        line.push_str(dir.arrow());
    }
    line.push(' ');
    line.push_str(&r.kind);
    if let Some(msgid) = r.msgid {
        line.push_str(&format!(" msgid={msgid}"));
    }
    if let Some(method) = &r.method {
        line.push(' ');
        line.push_str(method);
    }
    if let Some(latency) = r.latency {
        line.push_str(&format!(" ({:.3} ms)", latency.as_secs_f64() * 1e3));
    }
    if let (Some(size), Some(_)) = (r.size, &r.cut) {
        line.push_str(&format!(" [{size} bytes, shown in part]"));
    }
    for (name, value) in &r.fields {
        // Params follow the method, as in a call: echo ["hello"].
        match (name.as_str(), value) {
            ("params", value) => line.push_str(&format!(" {value}")),
            (_, Json::String(text)) if !matches!(name.as_str(), "result" | "error" | "item") => line.push_str(&format!(" {name}={text}")),
            (_, value) => line.push_str(&format!(" {name}={value}")),
        }
    }
    if let Some(cut) = &r.cut {
        line.push_str(&format!(" <{cut}>"));
    }
    line
}

/// Cut a line to `width` characters, marking the cut with "…".
fn trim(line: String, width: Option<usize>) -> String {
    match width {
        Some(width) if line.chars().count() > width => {
            let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
            cut.push('…');
            cut
        }
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_to_the_width() {
        assert_eq!(trim("abcdef".into(), Some(4)), "abc…");
        assert_eq!(trim("abcd".into(), Some(4)), "abcd");
        assert_eq!(trim("abcdef".into(), None), "abcdef");
    }

    #[test]
    fn renders_both_forms() {
        let mut r = Record::new(3, Some(Dir::ToClient), "response").with("result", "hi");
        r.msgid = Some(1);
        r.method = Some("echo".into());
        r.latency = Some(Duration::from_micros(1500));
        r.size = Some(7);
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(human_line(now, &r), "00:00:00.000 #3 <- response msgid=1 echo (1.500 ms) result=\"hi\"");
        let j: Json = serde_json::from_str(&json_line(now, &r)).unwrap();
        assert_eq!(j["dir"], "s2c");
        assert_eq!(j["latency_ms"], 1.5);
        assert_eq!(j["result"], "hi");
        assert_eq!(j["time"], "1970-01-01T00:00:00Z");
    }
}
