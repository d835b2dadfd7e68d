//! Logging: the sink set in the configuration (or `JOINT_LOG` on stderr), and a rate limit
//! for lines a peer can cause, so a flood of bad input or connections never floods the log.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{Context, LogLevel};

pub type LogSink = Rc<dyn Fn(LogLevel, &str)>;

/// Lines of one kind let through per window; the rest are counted and summarised.
const LINES_PER_WINDOW: u32 = 10;
const WINDOW: Duration = Duration::from_secs(10);

/// Per kind of peer-caused line: when its window started, lines logged and suppressed in it.
#[derive(Default)]
pub(super) struct RateLimit {
    kinds: HashMap<&'static str, (Instant, u32, u64)>,
}

impl RateLimit {
    /// Whether a line of `kind` may be logged now; the second value is how many of its kind
    /// were suppressed in the window that just ended (to be reported once).
    fn admit(&mut self, kind: &'static str, now: Instant) -> (bool, u64) {
        let entry = self.kinds.entry(kind).or_insert((now, 0, 0));
        let mut suppressed_before = 0;
        if now.duration_since(entry.0) >= WINDOW {
            suppressed_before = entry.2;
            *entry = (now, 0, 0);
        }
        if entry.1 < LINES_PER_WINDOW {
            entry.1 += 1;
            (true, suppressed_before)
        } else {
            entry.2 += 1;
            (false, suppressed_before)
        }
    }
}

impl Context {
    /// Log a line a peer caused (bad input, a refused or timed-out connection): at most
    /// [`LINES_PER_WINDOW`] of each `kind` per 10 s, then one line saying how many were left out.
    pub(crate) fn log_peer(&self, level: LogLevel, kind: &'static str, message: impl FnOnce() -> String) {
        if level > self.log_level || self.log.is_none() {
            return;
        }
        let (admit, suppressed) = self.peer_log.borrow_mut().admit(kind, Instant::now());
        if suppressed > 0 {
            self.log(level, || format!("{suppressed} more lines like \"{kind}\" in the last {} s were not logged", WINDOW.as_secs()));
        }
        if admit {
            self.log(level, message);
        }
    }
}

pub(super) fn env_sink() -> Option<LogSink> {
    std::env::var_os("JOINT_LOG").map(|_| {
        Rc::new(|level: LogLevel, msg: &str| {
            let tag = match level {
                LogLevel::Error => "error",
                LogLevel::Warn => "warn",
                LogLevel::Info => "info",
                LogLevel::Debug => "debug",
            };
            eprintln!("joint[{}] {tag}: {msg}", std::process::id());
        }) as LogSink
    })
}

pub(super) fn env_level() -> Option<LogLevel> {
    match std::env::var("JOINT_LOG").ok()?.as_str() {
        "error" => Some(LogLevel::Error),
        "warn" => Some(LogLevel::Warn),
        "info" => Some(LogLevel::Info),
        "debug" | "1" | "all" => Some(LogLevel::Debug),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_a_few_lines_per_window_then_reports_the_rest() {
        let mut r = RateLimit::default();
        let t0 = Instant::now();
        let admitted = (0..100).filter(|_| r.admit("x", t0).0).count();
        assert_eq!(admitted, LINES_PER_WINDOW as usize);
        assert_eq!(r.admit("y", t0), (true, 0), "kinds are counted apart");
        assert_eq!(r.admit("x", t0 + WINDOW), (true, 100 - LINES_PER_WINDOW as u64));
        assert_eq!(r.admit("x", t0 + WINDOW), (true, 0));
    }
}
