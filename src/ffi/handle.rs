//! Handles: how each C object is owned, and the one place where pointers from C become
//! references.
//!
//! Every C object is a `Box` handed out with [`into_handle`] and taken back with
//! [`take_handle`], except [`Borrowed`] ones, which C only sees during a callback. Objects
//! made by a context (connections, listeners, streams, requests) hold its [`Life`] instead of
//! a pointer to it: after `joint_ctx_free` the token says "gone", their functions return
//! `JOINT_E_STATE`, and their `_free` still works, in any order.
//!
//! Every export that takes a handle runs its body through [`with_handle`] (handles of a
//! context: NULL refused, context alive and unpoisoned, a panic poisons it) or
//! [`with_object`] (objects that stand alone: NULL refused, a panic is caught).

use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Arc;

use super::ctx::joint_ctx;
use super::status::*;
use crate::error::Error;
use crate::reactor::Context;

/// Handed to C as a `Box`; freed by its `_free` (or, for connections a listener accepted, by
/// the context after their CLOSED callback).
pub(crate) struct Boxed;
/// Lent to a callback and valid only until it returns; never freed by C.
pub(crate) struct Borrowed;

/// A C object and its ownership kind.
pub(crate) trait Castable {
    type Ownership;
}

/// Give a new object to C.
pub(crate) fn into_handle<T: Castable<Ownership = Boxed>>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Take an object back from C (NULL: `None`).
///
/// # Safety
/// `ptr` is NULL or came from [`into_handle`] and is not used afterwards.
pub(crate) unsafe fn take_handle<T: Castable<Ownership = Boxed>>(ptr: *mut T) -> Option<Box<T>> {
    // SAFETY: per the function's contract.
    (!ptr.is_null()).then(|| unsafe { Box::from_raw(ptr) })
}

/// Borrow an object C passes in.
///
/// # Safety
/// `ptr` is NULL or points to a live object of type `T` for `'a`.
unsafe fn as_ref<'a, T: Castable>(ptr: *const T) -> Option<&'a T> {
    // SAFETY: per the function's contract.
    unsafe { ptr.as_ref() }
}

/// Whether a context is alive: shared by the context and every handle made from it. Only
/// the loop thread (the one that frees the context) reads the pointers as references.
pub(crate) struct Life {
    /// The context while it may be used; cleared when `joint_ctx_free` starts.
    ctx: AtomicPtr<joint_ctx>,
    /// The context's box while it exists (also while it is being freed, when callbacks may
    /// still free handles it keeps track of); cleared just before the box is freed.
    home: AtomicPtr<joint_ctx>,
}

impl Life {
    pub fn new() -> Arc<Life> {
        Arc::new(Life { ctx: AtomicPtr::default(), home: AtomicPtr::default() })
    }

    /// The context's box exists at `ctx` and may be used.
    pub fn start(&self, ctx: *mut joint_ctx) {
        self.home.store(ctx, Ordering::Release);
        self.ctx.store(ctx, Ordering::Release);
    }

    /// The context, unless it was freed (or is being freed).
    pub fn get(&self) -> Option<&joint_ctx> {
        // SAFETY: the pointer is the context's own box, cleared by `end` before the box is
        // freed; handles are used on the thread that frees it (documented threading rule).
        unsafe { self.ctx.load(Ordering::Acquire).as_ref() }
    }

    /// The context's box, also while it is being freed: for bookkeeping only.
    pub fn home(&self) -> Option<&joint_ctx> {
        // SAFETY: as for `get`; cleared by `end_home` before the box is freed.
        unsafe { self.home.load(Ordering::Acquire).as_ref() }
    }

    /// The context is going: every handle now reports `JOINT_E_STATE`.
    pub fn end(&self) {
        self.ctx.store(std::ptr::null_mut(), Ordering::Release);
    }

    /// The context's box is about to be freed.
    pub fn end_home(&self) {
        self.home.store(std::ptr::null_mut(), Ordering::Release);
    }
}

/// A handle that belongs to a context.
pub(crate) trait InContext: Castable {
    fn life(&self) -> Option<&joint_ctx>;
}

/// What a handle's body works with: the context's C-side state and the reactor.
pub(crate) struct Live<'a> {
    pub jc: &'a joint_ctx,
    pub ctx: &'a Context,
}

impl Live<'_> {
    /// Record `e` as the context's last error and return its status.
    pub fn fail(&self, e: &Error) -> joint_status {
        self.refuse(status_of(e.kind), &e.message)
    }

    /// Record why a call was refused and return `status`.
    pub fn refuse(&self, status: joint_status, why: &str) -> joint_status {
        self.jc.set_last_error(why);
        status
    }

    /// `JOINT_OK`, or the error recorded.
    pub fn status(&self, r: crate::error::Result<()>) -> joint_status {
        r.map_or_else(|e| self.fail(&e), |()| JOINT_OK)
    }
}

/// What an export returns when it cannot run its body (NULL handle, context gone, panic).
pub(crate) trait Refusal {
    fn refused(status: joint_status) -> Self;
}

impl Refusal for joint_status {
    fn refused(status: joint_status) -> Self {
        status
    }
}

impl Refusal for bool {
    fn refused(_: joint_status) -> Self {
        false
    }
}

impl Refusal for () {
    fn refused(_: joint_status) -> Self {}
}

macro_rules! refuse_with_zero {
    ($($t:ty),*) => { $(impl Refusal for $t { fn refused(_: joint_status) -> Self { 0 } })* };
}
refuse_with_zero!(u32, u64, usize);

impl<T> Refusal for *mut T {
    fn refused(_: joint_status) -> Self {
        std::ptr::null_mut()
    }
}

impl Refusal for *const c_char {
    fn refused(_: joint_status) -> Self {
        c"".as_ptr()
    }
}

/// Run a handle's body against its live context; `refuse` turns a refusal into the export's
/// return value.
///
/// # Safety
/// `ptr` is NULL or a live handle (the C caller's promise).
pub(crate) unsafe fn enter<H: InContext, R>(ptr: *const H, refuse: impl Fn(joint_status) -> R, body: impl FnOnce(&H, Live<'_>) -> R) -> R {
    let run = || {
        // SAFETY: forwarded caller promise.
        let Some(handle) = (unsafe { as_ref(ptr) }) else { return refuse(JOINT_E_NULL) };
        let Some(jc) = handle.life() else { return refuse(JOINT_E_STATE) };
        if jc.is_poisoned() {
            jc.set_last_error("the context is poisoned by an earlier panic; only the _free functions work");
            return refuse(JOINT_E_POISONED);
        }
        let Some(ctx) = jc.context() else { return refuse(JOINT_E_STATE) };
        match catch_unwind(AssertUnwindSafe(|| body(handle, Live { jc, ctx: &ctx }))) {
            Ok(r) => r,
            Err(_) => {
                jc.poison();
                jc.set_last_error("a panic inside joint was caught; the context is poisoned");
                refuse(JOINT_E_PANIC)
            }
        }
    };
    catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|_| refuse(JOINT_E_PANIC))
}

/// [`enter`] with the return type's usual refusal.
///
/// # Safety
/// As for [`enter`].
pub(crate) unsafe fn with_handle<H: InContext, R: Refusal>(ptr: *const H, body: impl FnOnce(&H, Live<'_>) -> R) -> R {
    // SAFETY: forwarded caller promise.
    unsafe { enter(ptr, R::refused, body) }
}

/// Run the body of an export on an object that stands alone (no context, or any thread):
/// NULL is refused and a panic is caught.
///
/// # Safety
/// `ptr` is NULL or a live object not used elsewhere during the call.
pub(crate) unsafe fn with_object<T: Castable, R: Refusal>(ptr: *mut T, body: impl FnOnce(&mut T) -> R) -> R {
    guard(
        || R::refused(JOINT_E_PANIC),
        || {
            // SAFETY: forwarded caller promise.
            match unsafe { ptr.as_mut() } {
                Some(object) => body(object),
                None => R::refused(JOINT_E_NULL),
            }
        },
    )
}

/// [`with_object`] for read-only access through a `const` pointer.
///
/// # Safety
/// `ptr` is NULL or a live object.
pub(crate) unsafe fn with_ref<T: Castable, R: Refusal>(ptr: *const T, body: impl FnOnce(&T) -> R) -> R {
    guard(
        || R::refused(JOINT_E_PANIC),
        || {
            // SAFETY: forwarded caller promise.
            match unsafe { as_ref(ptr) } {
                Some(object) => body(object),
                None => R::refused(JOINT_E_NULL),
            }
        },
    )
}

/// Run an export's body, turning a panic into `on_panic()`.
pub(crate) fn guard<R>(on_panic: impl FnOnce() -> R, body: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| on_panic())
}
