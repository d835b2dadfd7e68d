//! What `joint bench` measured: counts and a latency histogram, shown as a live progress line,
//! a final table or one line of JSON.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Latencies are kept in microseconds, from 1 µs to an hour, to 3 significant digits
/// (a fixed ~0.5 MB whatever the run's length).
const MAX_LATENCY_US: u64 = 3_600_000_000;

pub(crate) struct Stats {
    pub calls: u64,
    pub errors: u64,
    latency_us: Histogram<u64>,
    /// When measuring began, and when the last counted call ended.
    started: Option<Instant>,
    last_end: Option<Instant>,
}

impl Stats {
    pub fn new() -> Stats {
        let latency_us = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds");
        Stats { calls: 0, errors: 0, latency_us, started: None, last_end: None }
    }

    pub fn start(&mut self, at: Instant) {
        self.started = Some(at);
    }

    /// An answered call (result or error response), `latency` after it was (meant to be) sent.
    pub fn answered(&mut self, latency: Duration, is_error: bool, now: Instant) {
        self.latency_us.saturating_record((latency.as_micros() as u64).max(1));
        self.ended(is_error, now);
    }

    /// A call that got no answer in time.
    pub fn timed_out(&mut self, now: Instant) {
        self.ended(true, now);
    }

    /// Calls that were due but never sent (open loop, the run gave up on its backlog).
    pub fn never_sent(&mut self, n: u64, now: Instant) {
        self.calls += n;
        self.errors += n;
        if n > 0 {
            self.last_end = Some(now);
        }
    }

    fn ended(&mut self, is_error: bool, now: Instant) {
        self.calls += 1;
        self.errors += u64::from(is_error);
        self.last_end = Some(now);
    }

    pub fn seconds(&self) -> f64 {
        match (self.started, self.last_end) {
            (Some(s), Some(e)) => e.saturating_duration_since(s).as_secs_f64(),
            _ => 0.0,
        }
    }

    fn calls_per_sec(&self) -> f64 {
        match self.seconds() {
            s if s > 0.0 => self.calls as f64 / s,
            _ => 0.0,
        }
    }

    /// Latency at quantile `q`, in milliseconds (0 if nothing was answered).
    fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.latency_us.max() as f64 / 1000.0
    }

    pub fn to_json(&self) -> String {
        serde_json::json!({
            "calls": self.calls,
            "errors": self.errors,
            "seconds": round3(self.seconds()),
            "calls_per_sec": round3(self.calls_per_sec()),
            "latency_ms": {
                "p50": self.ms(0.5), "p90": self.ms(0.9), "p99": self.ms(0.99), "p999": self.ms(0.999), "max": self.max_ms(),
            },
        })
        .to_string()
    }

    pub fn table(&self) -> String {
        format!(
            "{:>10} {:>8} {:>9} {:>11}\n{:>10} {:>8} {:>9.3} {:>11.1}\n\nlatency (ms)  {:>8} {:>8} {:>8} {:>8} {:>8}\n              {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}\n",
            "calls",
            "errors",
            "seconds",
            "calls/s",
            self.calls,
            self.errors,
            self.seconds(),
            self.calls_per_sec(),
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.ms(0.999),
            self.max_ms(),
        )
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The live line on stderr: drawn only when stderr is a terminal.
pub(crate) struct Progress {
    bar: ProgressBar,
    /// Calls counted at the last update, and when, for the current rate.
    last: (u64, Instant),
}

/// How often the progress line changes.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_millis(250);

impl Progress {
    pub fn new() -> Progress {
        let target = if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed:>3} {msg}").expect("valid progress template"));
        Progress { bar, last: (0, Instant::now()) }
    }

    pub fn warming_up(&self) {
        self.bar.set_message("warming up");
        self.bar.tick();
    }

    pub fn update(&mut self, stats: &Stats, now: Instant) {
        let (calls, at) = self.last;
        let secs = now.saturating_duration_since(at).as_secs_f64();
        let rate = if secs > 0.0 { stats.calls.saturating_sub(calls) as f64 / secs } else { 0.0 };
        self.last = (stats.calls, now);
        self.bar.set_message(format!("{rate:.0} calls/s, {} calls, {} errors, p99 {:.3} ms", stats.calls, stats.errors, stats.ms(0.99)));
        self.bar.tick();
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
