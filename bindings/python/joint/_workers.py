"""The thread pool a Server runs its plain (and generator) handlers on, so one slow handler
does not hold up the loop that serves every other connection.

Workers only use the request functions joint.h calls thread-safe (reply, yield, wait for
credit, pull input) and reach the context through its lock; everything else about a request
(its params, its connection, its peer) was read on the loop thread before it was handed over.
"""
import concurrent.futures
import threading
from typing import Any, Callable, Dict, Optional, Tuple

from ._ffi import lib, log

DEFAULT_WORKERS = 8
"""Worker threads of a Server unless ``workers=`` says otherwise (started as work comes)."""

_on_worker = threading.local()


def on_worker() -> bool:
    """Whether the current thread is one of a WorkerPool's."""
    return getattr(_on_worker, 'active', False)


class WorkerPool:
    """``workers`` threads (concurrent.futures.ThreadPoolExecutor) running handler jobs. Each
    job owns a request (or None for a notification); a job that never starts because the pool
    closes first has its request released, so its caller gets an error instead of waiting."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix='joint-worker')
        self._lock = threading.Lock()
        self._pending: Dict['concurrent.futures.Future[None]', Optional[Any]] = {}
        self.closed = False

    def submit(self, req: Optional[Any], job: Callable[[], None]) -> bool:
        """Run ``job`` on a worker; False (nothing queued) once the pool is closed."""
        with self._lock:
            if self.closed:
                return False
            fut = self._executor.submit(_run, job)
            self._pending[fut] = req
        fut.add_done_callback(self._finished)
        return True

    def _finished(self, fut: 'concurrent.futures.Future[None]') -> None:
        with self._lock:
            self._pending.pop(fut, None)

    def close(self) -> None:
        """Drop the jobs that have not started (their requests are released), then wait for
        the running ones, unless called from a worker (which cannot wait for itself)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            pending: Tuple[Tuple['concurrent.futures.Future[None]', Optional[Any]], ...] = \
                tuple(self._pending.items())
        for fut, req in pending:
            if fut.cancel() and req is not None:
                lib.joint_request_free(req)
        self._executor.shutdown(wait=not on_worker())


def _run(job: Callable[[], None]) -> None:
    _on_worker.active = True
    try:
        job()
    except BaseException:  # noqa: B902 - nobody waits on the future: say it in the log
        log.exception('joint: a worker job failed')
    finally:
        _on_worker.active = False
