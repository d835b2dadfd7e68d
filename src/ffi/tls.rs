//! `joint_tls_config`: TLS settings for `tls://` listeners and connections, and what a TLS
//! connection's handshake settled (version, the peer's certificate).

use std::ffi::{c_char, CString};

use super::args::{c_str, put, put_slice, slice};
use super::conn::{joint_conn, open_conn};
use super::ctx::joint_ctx;
use super::handle::{guard, into_handle, take_handle, with_handle, with_object, with_ref, Boxed, Castable, Live};
use super::listener::joint_listener;
use super::status::*;
use crate::error::Result;
use crate::reactor::{ClientAuth, TlsConfig, TlsSession};

/// TLS settings: for a listener, its certificate chain and key, and optionally the CA that
/// client certificates must be signed by; for a client, the CA to trust instead of the
/// system's roots, a certificate for servers that ask for one, and the server name to
/// verify. Certificates and keys are read and checked by the setters (a failing setter
/// leaves the settings as they were; `joint_tls_config_error` says why). Read (copied) by
/// `joint_ctx_listen_tls` and `joint_ctx_connect_tls`, so it may be freed or changed right
/// after. Create with `joint_tls_config_new`, free with `joint_tls_config_free`.
pub struct joint_tls_config {
    pub(super) tls: TlsConfig,
    error: CString,
}

impl Castable for joint_tls_config {
    type Ownership = Boxed;
}

/// Client certificates (`joint_tls_config_set_client_auth`): not asked for (the default).
pub const JOINT_TLS_CLIENT_AUTH_NONE: i32 = 0;
/// Asked for: a client without one is served, one with an invalid one is refused.
pub const JOINT_TLS_CLIENT_AUTH_OPTIONAL: i32 = 1;
/// Required: a client without a valid certificate is refused during the handshake.
pub const JOINT_TLS_CLIENT_AUTH_REQUIRED: i32 = 2;

/// Create empty TLS settings. On success `*tls_out` is owned by the caller.
#[no_mangle]
pub unsafe extern "C" fn joint_tls_config_new(tls_out: *mut *mut joint_tls_config) -> joint_status {
    guard(
        || JOINT_E_PANIC,
        || {
            if tls_out.is_null() {
                return JOINT_E_NULL;
            }
            // SAFETY: checked non-NULL.
            unsafe { put(tls_out, into_handle(joint_tls_config { tls: TlsConfig::new(), error: CString::default() })) };
            JOINT_OK
        },
    )
}

/// Free TLS settings. NULL is a no-op. Listeners and connections made with them keep theirs.
#[no_mangle]
pub unsafe extern "C" fn joint_tls_config_free(tls: *mut joint_tls_config) {
    // SAFETY: NULL or settings from joint_tls_config_new, freed once (caller's promise).
    guard(|| (), || drop(unsafe { take_handle(tls) }))
}

/// Why the last failing setter failed ("" if none failed). Owned by the settings; valid until
/// the next setter call or `joint_tls_config_free`.
#[no_mangle]
pub unsafe extern "C" fn joint_tls_config_error(tls: *const joint_tls_config) -> *const c_char {
    // SAFETY: forwarded caller promise.
    unsafe { with_ref(tls, |t| t.error.as_ptr()) }
}

/// Run a setter, keeping its error message.
fn record(t: &mut joint_tls_config, result: Result<()>) -> joint_status {
    match result {
        Ok(()) => {
            t.error = CString::default();
            JOINT_OK
        }
        Err(e) => {
            t.error = CString::new(e.message.replace('\0', "")).unwrap_or_default();
            status_of(e.kind)
        }
    }
}

fn path_arg(p: *const c_char) -> std::result::Result<String, joint_status> {
    // SAFETY: NULL or a C string (caller's promise, checked by c_str).
    unsafe { c_str(p) }.map(|b| String::from_utf8_lossy(b).into_owned())
}

/// The certificate chain (leaf first) and its private key, from PEM files (PKCS#8, PKCS#1 or
/// SEC1 keys). A listener needs one; a client presents it when the server asks. Fails with
/// `JOINT_E_INVAL` if a file cannot be read, holds no certificate or key, or the key is not
/// the certificate's.
#[no_mangle]
pub unsafe extern "C" fn joint_tls_config_set_certificate_files(
    tls: *mut joint_tls_config,
    chain_path: *const c_char,
    key_path: *const c_char,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(tls, |t| {
            let (chain, key) = match (path_arg(chain_path), path_arg(key_path)) {
                (Ok(c), Ok(k)) => (c, k),
                (Err(s), _) | (_, Err(s)) => return s,
            };
            let r = t.tls.set_certificate_files(&chain, &key);
            record(t, r)
        })
    }
}

/// `joint_tls_config_set_certificate_files` from PEM bytes in memory (copied).
#[no_mangle]
pub unsafe extern "C" fn joint_tls_config_set_certificate_pem(
    tls: *mut joint_tls_config,
    chain: *const u8,
    chain_len: usize,
    key: *const u8,
    key_len: usize,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(tls, |t| {
            let (chain, key) = match (slice(chain, chain_len), slice(key, key_len)) {
                (Ok(c), Ok(k)) => (c, k),
                (Err(s), _) | (_, Err(s)) => return s,
            };
            let r = t.tls.set_certificate_pem(chain, key);
            record(t, r)
        })
    }
}

/// Trust the CA certificates in this PEM file: a client verifies servers against them
/// instead of the system's roots; a listener verifies client certificates against them.
#[no_mangle]
pub unsafe extern "C" fn joint_tls_config_set_ca_file(tls: *mut joint_tls_config, path: *const c_char) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(tls, |t| match path_arg(path) {
            Ok(p) => {
                let r = t.tls.set_ca_file(&p);
                record(t, r)
            }
            Err(s) => s,
        })
    }
}

/// `joint_tls_config_set_ca_file` from PEM bytes in memory (copied).
#[no_mangle]
pub unsafe extern "C" fn joint_tls_config_set_ca_pem(tls: *mut joint_tls_config, pem: *const u8, len: usize) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(tls, |t| match slice(pem, len) {
            Ok(pem) => {
                let r = t.tls.set_ca_pem(pem);
                record(t, r)
            }
            Err(s) => s,
        })
    }
}

/// Listener side: `JOINT_TLS_CLIENT_AUTH_NONE`, `_OPTIONAL` or `_REQUIRED` (the last two need
/// a CA set with `joint_tls_config_set_ca_*`, checked by `joint_ctx_listen_tls`).
#[no_mangle]
pub unsafe extern "C" fn joint_tls_config_set_client_auth(tls: *mut joint_tls_config, mode: i32) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(tls, |t| {
            let mode = match mode {
                JOINT_TLS_CLIENT_AUTH_NONE => ClientAuth::None,
                JOINT_TLS_CLIENT_AUTH_OPTIONAL => ClientAuth::Optional,
                JOINT_TLS_CLIENT_AUTH_REQUIRED => ClientAuth::Required,
                _ => return JOINT_E_INVAL,
            };
            t.tls.set_client_auth(mode);
            JOINT_OK
        })
    }
}

/// Client side: the DNS name (or IP address) the server's certificate must carry, instead of
/// the host in the URI.
#[no_mangle]
pub unsafe extern "C" fn joint_tls_config_set_server_name(tls: *mut joint_tls_config, name: *const c_char) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_object(tls, |t| match path_arg(name) {
            Ok(n) => {
                let r = t.tls.set_server_name(&n);
                record(t, r)
            }
            Err(s) => s,
        })
    }
}

/// Listen on `tls://HOST:PORT` (port 0 picks one): as `joint_ctx_listen`, each accepted
/// connection served over TLS 1.3 or 1.2 with `tls`, which needs a certificate and key. The
/// handshake runs inside `joint_ctx_process` without blocking; the connection callback gets
/// OPEN once it is done. A client that fails it (untrusted or missing certificate, not
/// speaking TLS) or does not finish it within the message timeout is closed without any
/// event, and logged at info level.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_listen_tls(
    ctx: *mut joint_ctx,
    uri: *const c_char,
    tls: *const joint_tls_config,
    listener_out: *mut *mut joint_listener,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        if tls.is_null() {
            return JOINT_E_NULL;
        }
        with_ref(tls, |t| super::listener::listen(ctx, uri, Some(&t.tls), listener_out))
    }
}

/// Connect to `tls://HOST:PORT` with these settings (NULL: verify against the system's
/// roots, as `joint_ctx_connect` does). The server's certificate must be signed by a trusted
/// CA and carry the URI's host (or the server name set). Calls may be made at once; they
/// are sent once the handshake is done. A failed handshake closes the connection within the
/// connect timeout: its calls fail with `JOINT_E_TLS` and a message naming the cause, and
/// the connection callback gets CLOSED with it.
#[no_mangle]
pub unsafe extern "C" fn joint_ctx_connect_tls(
    ctx: *mut joint_ctx,
    uri: *const c_char,
    tls: *const joint_tls_config,
    conn_out: *mut *mut joint_conn,
) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        let connect = |settings: &TlsConfig| {
            open_conn(ctx, conn_out, |live| {
                let uri = c_str(uri)?;
                live.ctx.connect_tls(&String::from_utf8_lossy(uri), settings).map_err(|e| live.fail(&e))
            })
        };
        if tls.is_null() {
            connect(&TlsConfig::new())
        } else {
            with_ref(tls, |t| connect(&t.tls))
        }
    }
}

/// The connection's TLS session, kept on its handle once the handshake is done (so the
/// strings and bytes lent out stay valid as long as the handle).
fn session<'a>(conn: &'a joint_conn, live: &Live<'_>) -> Option<&'a (TlsSession, CString, CString)> {
    if let Some(s) = conn.tls.get() {
        return Some(s);
    }
    let session = live.ctx.tls_session(conn.id())?;
    let version = CString::new(session.version).unwrap_or_default();
    let subject = session.peer_certificate.as_ref().map(|c| CString::new(c.subject.replace('\0', "")).unwrap_or_default()).unwrap_or_default();
    Some(conn.tls.get_or_init(|| (session, version, subject)))
}

/// "TLSv1.3" or "TLSv1.2" once a TLS connection's handshake is done; NULL before, and for
/// other transports. Owned by the handle.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_tls_version(conn: *const joint_conn) -> *const c_char {
    // SAFETY: forwarded caller promise.
    unsafe { with_handle(conn, |c: &joint_conn, live: Live<'_>| session(c, &live).map_or(std::ptr::null(), |s| s.1.as_ptr())) }
}

/// The certificate the peer presented and the handshake verified (DER), lent until the
/// handle is freed (for accepted connections: until their CLOSED callback returns).
/// `JOINT_E_STATE` if there is none: not TLS, the handshake is not done, or a client sent
/// none.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_peer_certificate(conn: *const joint_conn, der_out: *mut *const u8, len_out: *mut usize) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(conn, |c: &joint_conn, live: Live<'_>| {
            if der_out.is_null() || len_out.is_null() {
                return JOINT_E_NULL;
            }
            match session(c, &live).and_then(|s| s.0.peer_certificate.as_ref()) {
                Some(cert) => {
                    put_slice(&cert.der, der_out, len_out);
                    JOINT_OK
                }
                None => live.refuse(JOINT_E_STATE, "the connection has no verified peer certificate"),
            }
        })
    }
}

/// The subject of the peer's verified certificate, attributes in certificate order (for
/// example "O=example, CN=alice"); "" if there is none. Owned by the handle.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_peer_subject(conn: *const joint_conn) -> *const c_char {
    // SAFETY: forwarded caller promise.
    unsafe { with_handle(conn, |c: &joint_conn, live: Live<'_>| session(c, &live).map_or(c"".as_ptr(), |s| s.2.as_ptr())) }
}

/// The SHA-256 fingerprint of the peer's verified certificate, into `sha256_out` (32 bytes).
/// `JOINT_E_STATE` if there is none.
#[no_mangle]
pub unsafe extern "C" fn joint_conn_peer_sha256(conn: *const joint_conn, sha256_out: *mut u8) -> joint_status {
    // SAFETY: forwarded caller promise.
    unsafe {
        with_handle(conn, |c: &joint_conn, live: Live<'_>| {
            if sha256_out.is_null() {
                return JOINT_E_NULL;
            }
            match session(c, &live).and_then(|s| s.0.peer_certificate.as_ref()) {
                Some(cert) => {
                    // SAFETY: the caller provides 32 writable bytes.
                    std::ptr::copy_nonoverlapping(cert.sha256.as_ptr(), sha256_out, 32);
                    JOINT_OK
                }
                None => live.refuse(JOINT_E_STATE, "the connection has no verified peer certificate"),
            }
        })
    }
}
