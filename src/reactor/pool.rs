//! The worker pool: methods registered with [`Context::register_pooled`] run on worker
//! threads instead of the loop thread, so a slow or blocking handler does not stall other
//! calls. Requests are answered (and stream) from those threads through the same
//! thread-safe paths as deferred replies. Threads start on first use.

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::{Context, Request};

/// A handler that runs on a worker thread.
pub type PooledHandler = Arc<dyn Fn(Request) + Send + Sync>;

type Job = Box<dyn FnOnce() + Send>;

pub(super) struct Pool {
    size: usize,
    sender: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    pub(super) fn new(size: usize) -> Self {
        Pool { size: size.max(1), sender: None, threads: Vec::new() }
    }

    fn run(&mut self, job: Job) {
        if self.sender.is_none() {
            let (tx, rx) = channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..self.size {
                let rx = rx.clone();
                let spawned = std::thread::Builder::new().name(format!("joint-worker-{i}")).spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    match job {
                        // A panicking handler must not take the worker down; its request
                        // was dropped during the unwind, which answered the caller.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        Err(_) => return,
                    }
                });
                if let Ok(t) = spawned {
                    self.threads.push(t);
                }
            }
            self.sender = Some(tx);
        }
        if let Some(tx) = &self.sender {
            let _ = tx.send(job);
        }
    }
}

impl Drop for Pool {
    /// Workers finish the jobs they have, then exit.
    fn drop(&mut self) {
        self.sender = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Context {
    /// Serve `method` on the worker pool (`Config::workers` threads). The handler owns the
    /// request as usual: it answers it (or streams with `yield_item`/`wait_writable`, and
    /// pulls inputs with `next_input`) from its thread.
    pub fn register_pooled(&self, method: &[u8], handler: PooledHandler) {
        let pool = self.pool.clone();
        self.register(
            method,
            std::rc::Rc::new(move |_ctx: &Context, req: Request| {
                let handler = handler.clone();
                if let Ok(mut p) = pool.lock() {
                    p.run(Box::new(move || handler(req)));
                }
            }),
        );
    }
}
