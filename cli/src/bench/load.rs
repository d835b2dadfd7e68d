//! Driving the load: open the connections, keep calls in flight (closed loop) or send them on
//! a fixed schedule (open loop), and count how each one ends.
//!
//! One thread, one context. Completions refill their connection at once, so the pipeline
//! never waits for the main loop; the main loop only wakes for the schedule, the progress
//! line and the end of the run.

use std::cell::RefCell;
use std::io::Write;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use joint::error::ErrorKind;
use joint::reactor::{Config, ConnEvent, ConnId, Context, Response};

use super::stats::{Progress, Stats, PROGRESS_EVERY};
use super::{Plan, Stop};
use crate::EXIT_FAILED;

/// With --timeout 0, how long calls still in flight after --duration may take before they
/// are given up (counted as errors).
const DRAIN_WITHOUT_TIMEOUT: Duration = Duration::from_secs(10);

struct Slot {
    id: ConnId,
    in_flight: u32,
}

/// The state of a run, shared by the completions (`Rc<RefCell<Run>>`).
struct Run {
    method: Vec<u8>,
    params: Vec<u8>,
    timeout: Option<Duration>,
    depth: u32,
    stop: Stop,
    conns: Vec<Slot>,
    stats: Stats,
    /// Calls sent (or, open loop, scheduled) from here on are counted: the warm-up ends.
    measure_from: Instant,
    /// Open loop: call i is scheduled at `start + i * interval`.
    schedule: Option<(Instant, Duration)>,
    next_scheduled: u64,
    /// Open loop: the connection to try first for the next call.
    cursor: usize,
    /// Counted calls sent, and those of them still in flight.
    counted_sent: u64,
    counted_in_flight: u64,
    /// No more calls will be sent.
    done_sending: bool,
    /// The run is over: completions still to come (the context being dropped) are ignored.
    over: bool,
    /// Why the run ended early: a connection was lost, or a call could not be sent.
    lost: Option<String>,
}

type Shared = Rc<RefCell<Run>>;

impl Run {
    fn in_flight(&self) -> u64 {
        self.conns.iter().map(|c| u64::from(c.in_flight)).sum()
    }

    /// Whether a call sent (or scheduled) at `at` is still part of the run.
    fn wants_call_at(&self, at: Instant) -> bool {
        match self.stop {
            Stop::Calls(n) => at < self.measure_from || self.counted_sent < n,
            Stop::After(d) => at < self.measure_from + d,
        }
    }

    fn send(&mut self, ctx: &Context, shared: &Shared, conn: usize, at: Instant) {
        let counted = at >= self.measure_from;
        let shared = shared.clone();
        let done = Box::new(move |ctx: &Context, response: Response<'_>| finished(ctx, &shared, conn, at, counted, response));
        match ctx.call(self.conns[conn].id, &self.method, &self.params, self.timeout, done) {
            Ok(_) => {
                self.conns[conn].in_flight += 1;
                self.counted_sent += u64::from(counted);
                self.counted_in_flight += u64::from(counted);
            }
            Err(e) => self.end_early(format!("could not send a call: {}", e.message)),
        }
    }

    fn end_early(&mut self, why: String) {
        self.done_sending = true;
        self.lost.get_or_insert(why);
    }

    /// Closed loop: keep `depth` calls in flight on `conn`.
    fn refill(&mut self, ctx: &Context, shared: &Shared, conn: usize, now: Instant) {
        while !self.done_sending && self.conns[conn].in_flight < self.depth {
            if !self.wants_call_at(now) {
                self.done_sending = true;
                break;
            }
            self.send(ctx, shared, conn, now);
        }
    }

    /// Open loop: send every call whose time has come, while some connection has room;
    /// the others wait, their lateness counted in their latency.
    fn send_due(&mut self, ctx: &Context, shared: &Shared, now: Instant) {
        let Some((start, interval)) = self.schedule else { return };
        while !self.done_sending {
            let at = start + interval.mul_f64(self.next_scheduled as f64);
            if at > now {
                break;
            }
            if !self.wants_call_at(at) {
                self.done_sending = true;
                break;
            }
            let n = self.conns.len();
            let Some(conn) = (0..n).map(|k| (self.cursor + k) % n).find(|&c| self.conns[c].in_flight < self.depth) else {
                break;
            };
            self.send(ctx, shared, conn, at);
            self.next_scheduled += 1;
            self.cursor = (conn + 1) % n;
        }
    }

    fn pump(&mut self, ctx: &Context, shared: &Shared, now: Instant) {
        if self.schedule.is_some() {
            self.send_due(ctx, shared, now);
        } else {
            for conn in 0..self.conns.len() {
                self.refill(ctx, shared, conn, now);
            }
        }
    }

    /// Open loop, past --duration by the drain limit with calls still waiting for room (a
    /// server that stalled): stop, and count every call scheduled in the measured window
    /// but never sent as an error, so the run ends instead of working off the backlog.
    fn give_up_backlog(&mut self, end: Instant, now: Instant) {
        let Some((start, interval)) = self.schedule else { return };
        let first_at = |t: Instant| (t.saturating_duration_since(start).as_secs_f64() / interval.as_secs_f64()).ceil() as u64;
        let unsent = first_at(end).saturating_sub(self.next_scheduled.max(first_at(self.measure_from)));
        self.stats.never_sent(unsent, now);
        self.done_sending = true;
    }

    /// When the main loop must next wake for the schedule (open loop).
    fn next_send(&self) -> Option<Instant> {
        let (start, interval) = self.schedule?;
        (!self.done_sending).then(|| start + interval.mul_f64(self.next_scheduled as f64))
    }
}

/// A call's completion: count it, then send the next.
fn finished(ctx: &Context, shared: &Shared, conn: usize, at: Instant, counted: bool, response: Response<'_>) {
    let now = Instant::now();
    let mut guard = shared.borrow_mut();
    let run = &mut *guard;
    if run.over {
        return;
    }
    run.conns[conn].in_flight -= 1;
    run.counted_in_flight -= u64::from(counted);
    let latency = now.saturating_duration_since(at);
    match response.outcome {
        Ok(_) if counted => run.stats.answered(latency, false, now),
        Ok(_) => {}
        Err(e) => match e.kind {
            ErrorKind::Remote | ErrorKind::TooLarge | ErrorKind::Protocol if counted => run.stats.answered(latency, true, now),
            ErrorKind::Timeout if counted => run.stats.timed_out(now),
            ErrorKind::Remote | ErrorKind::TooLarge | ErrorKind::Protocol | ErrorKind::Timeout => {}
            _ => run.end_early(format!("connection lost: {}", e.message)),
        },
    }
    // Callbacks may call back into the context: refill at once, without the main loop.
    if run.schedule.is_some() {
        run.send_due(ctx, shared, now);
    } else {
        run.refill(ctx, shared, conn, now);
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("joint: bench: {message}");
    ExitCode::from(EXIT_FAILED)
}

/// `joint bench`: connect, run, report.
pub(crate) fn run(plan: &Plan, json: bool) -> ExitCode {
    let connect_timeout = plan.timeout.unwrap_or(DRAIN_WITHOUT_TIMEOUT);
    let ctx = match Context::new(Config { connect_timeout: Some(connect_timeout), ..Config::default() }) {
        Ok(ctx) => ctx,
        Err(e) => return fail(&e.message),
    };
    let conns = match connect_all(&ctx, plan, connect_timeout) {
        Ok(conns) => conns,
        Err(why) => return fail(&format!("could not connect to {}: {why}", plan.uri)),
    };
    let start = Instant::now();
    let mut stats = Stats::new();
    stats.start(start + plan.warmup);
    let shared: Shared = Rc::new(RefCell::new(Run {
        method: plan.method.as_bytes().to_vec(),
        params: plan.params.clone(),
        timeout: plan.timeout,
        depth: plan.depth,
        stop: plan.stop,
        conns: conns.into_iter().map(|id| Slot { id, in_flight: 0 }).collect(),
        stats,
        measure_from: start + plan.warmup,
        schedule: plan.interval.map(|i| (start, i)),
        next_scheduled: 0,
        cursor: 0,
        counted_sent: 0,
        counted_in_flight: 0,
        done_sending: false,
        over: false,
        lost: None,
    }));
    let events = shared.clone();
    ctx.set_conn_event_handler(Some(Rc::new(move |_ctx: &Context, _id, event: ConnEvent<'_>| {
        if let ConnEvent::Closed { reason, .. } = event {
            events.borrow_mut().end_early(format!("connection lost: {reason}"));
        }
    })));

    let outcome = drive(&ctx, &shared, plan);

    let mut run = shared.borrow_mut();
    run.over = true;
    let report = if json { run.stats.to_json() + "\n" } else { run.stats.table() };
    let (lost, calls) = (run.lost.take(), run.stats.calls);
    drop(run);
    ctx.set_conn_event_handler(None);
    drop(ctx); // completions still pending run now, and are ignored
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(report.as_bytes()).and_then(|()| out.flush());
    match (outcome, lost) {
        (Err(e), _) => fail(&e),
        (Ok(()), Some(why)) => fail(&format!("the run ended early after {calls} counted calls; {why}")),
        (Ok(()), None) => ExitCode::SUCCESS,
    }
}

/// Open every connection and wait until all are up (every kind announces `Open`), or one fails.
fn connect_all(ctx: &Context, plan: &Plan, limit: Duration) -> Result<Vec<ConnId>, String> {
    let mut conns = Vec::new();
    for _ in 0..plan.connections {
        conns.push(plan.target.open(ctx, &plan.tls).map_err(|e| e.message)?);
    }
    let status: Rc<RefCell<(Vec<ConnId>, Option<String>)>> = Rc::default();
    let s = status.clone();
    ctx.set_conn_event_handler(Some(Rc::new(move |_ctx: &Context, id, event: ConnEvent<'_>| match event {
        ConnEvent::Open => s.borrow_mut().0.push(id),
        ConnEvent::Closed { reason, .. } => {
            s.borrow_mut().1.get_or_insert_with(|| reason.to_string());
        }
        _ => {}
    })));
    let deadline = Instant::now() + limit + Duration::from_secs(1);
    let result = loop {
        let (up, failed) = {
            let s = status.borrow();
            (conns.iter().all(|c| s.0.contains(c)), s.1.clone())
        };
        if let Some(why) = failed {
            break Err(why);
        }
        if up {
            break Ok(conns);
        }
        let now = Instant::now();
        if now >= deadline {
            break Err(format!("not connected within {} ms", limit.as_millis()));
        }
        if let Err(e) = ctx.wait(Some((deadline - now).min(Duration::from_millis(100)))) {
            break Err(e.message);
        }
    };
    ctx.set_conn_event_handler(None);
    result
}

/// The main loop: wake for the schedule, the progress line and the end; stop once every
/// call has ended (or the run ended early).
fn drive(ctx: &Context, shared: &Shared, plan: &Plan) -> Result<(), String> {
    let mut progress = Progress::new();
    let measure_from = shared.borrow().measure_from;
    let end = match plan.stop {
        Stop::After(d) => Some(measure_from + d),
        Stop::Calls(_) => None,
    };
    let mut next_progress = Instant::now();
    let mut drain_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let wake = {
            let mut guard = shared.borrow_mut();
            let run = &mut *guard;
            run.pump(ctx, shared, now);
            if run.lost.is_some() || run.done_sending && run.in_flight() == 0 {
                break;
            }
            if now >= next_progress {
                if now < measure_from {
                    progress.warming_up();
                } else {
                    progress.update(&run.stats, now);
                }
                next_progress = now + PROGRESS_EVERY;
            }
            let drain_limit = plan.timeout.unwrap_or(DRAIN_WITHOUT_TIMEOUT) + Duration::from_secs(1);
            if let Some(end) = end.filter(|e| !run.done_sending && now >= *e + drain_limit) {
                run.give_up_backlog(end, now);
            }
            if run.done_sending {
                let until = *drain_until.get_or_insert(now + drain_limit);
                if now >= until {
                    // Unanswered past their own timeout (or the drain limit): errors.
                    for _ in 0..run.counted_in_flight {
                        run.stats.timed_out(now);
                    }
                    run.counted_in_flight = 0;
                    break;
                }
            }
            let give_up_at = end.filter(|_| !run.done_sending && run.schedule.is_some()).map(|e| e + drain_limit);
            [Some(next_progress), run.next_send(), end.filter(|_| !run.done_sending), give_up_at, drain_until].into_iter().flatten().min()
        };
        let timeout = wake.map_or(PROGRESS_EVERY, |w| w.saturating_duration_since(now));
        if plan.interval.is_some() {
            wait_precisely(ctx, timeout)?;
        } else {
            ctx.wait(Some(timeout)).map_err(|e| e.message)?;
        }
    }
    progress.finish();
    Ok(())
}

/// `Context::wait`, but to the microsecond: `wait` sleeps in whole milliseconds, and in open
/// loop that slack would count in every call's latency. ppoll(2) on the context's fd has
/// nanosecond resolution; the library's own next timer still caps the sleep.
fn wait_precisely(ctx: &Context, timeout: Duration) -> Result<(), String> {
    let timeout = match ctx.timeout_ms() {
        ms if ms >= 0 => timeout.min(Duration::from_millis(ms as u64)),
        _ => timeout,
    };
    if !timeout.is_zero() {
        let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32) };
        let mut fd = libc::pollfd { fd: ctx.fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: ppoll(2) on one pollfd and a timespec that live across the call. EINTR
        // (a signal) just ends the sleep early.
        unsafe { libc::ppoll(&mut fd, 1, &ts, std::ptr::null()) };
    }
    ctx.process().map_err(|e| e.message)
}
