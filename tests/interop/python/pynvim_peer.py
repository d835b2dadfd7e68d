"""pynvim 0.6.0's generic msgpack-rpc layer as a client, for joint's interop matrix.

    pynvim_peer.py client tcp HOST PORT | client unix PATH   run the checks against joint serve

Sessions come from pynvim.msgpack_rpc.tcp_session / socket_session, which send the
notification `nvim_set_client_info` with a BIN method name right after connecting. The
session's error_wrapper (a public attribute; pynvim's default keeps only the message) is set
to keep the whole error object. Pipelining goes through the session's AsyncSession (pynvim
has no public pipelined call: Session.request blocks).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import pycommon as C  # noqa: E402

from pynvim.msgpack_rpc import ErrorResponse, socket_session, tcp_session  # noqa: E402

SKIP = {
    "ext:negative-type": C.PY_NEGATIVE_EXT,
    "map:int-keys": "pynvim's Unpacker keeps msgpack 1.x's strict_map_key: a map with int keys "
                    "in a reply raises inside its event loop",
}


class RemoteError(Exception):
    pass


def client(args):
    s = tcp_session(args[1], int(args[2])) if args[0] == "tcp" else socket_session(args[1])
    s.error_wrapper = lambda e: RemoteError(e)

    def types():
        C.check_types(s.request, SKIP)

    def errors():
        C.check_errors(s.request, RemoteError)

    def notify():
        # The session's own first message was the bin-named nvim_set_client_info notification;
        # joint took it (a joint that refused it would have closed the connection by now).
        first = s.request("last_notification")
        first_ok = isinstance(first, list) and first and first[0] in (b"nvim_set_client_info", "nvim_set_client_info")
        s.request("note", *C.NOTE_PARAMS, async_=True)  # pynvim's way to send a notification
        got = s.request("last_notification")
        d = C.diff(["note", C.NOTE_PARAMS], got)
        ok = d is None and first_ok
        C.report("notify", ok, (d or "last_notification() = %r" % (got,))
                 + "; bin-named nvim_set_client_info on connect %s" % (
                     "received by joint" if first_ok else "NOT seen: %r" % (first,)))

    def pipeline():
        a = s._async_session
        plan = C.pipeline_plan()
        results = [None] * len(plan)
        order = []

        def done(k):
            def cb(err, rv):
                results[k] = (err, rv)
                order.append(k)
                if len(order) == len(plan):
                    a.stop()
            return cb

        for k, (method, params, _) in enumerate(plan):
            a.request(method, params, done(k))
        a.run(lambda *x: None, lambda *x: None)
        bad = [k for k, (r, (_, _, want)) in enumerate(zip(results, plan)) if r is None or r[0] or C.diff(want, r[1])]
        C.report("pipeline", not bad and len(order) == len(plan),
                 "%d calls, %d wrong" % (len(plan), len(bad)),
                 reordered=order != sorted(order))

    def big():
        data = C.big_bytes()
        got = s.request("echo", data)
        ok = isinstance(got, bytes) and got == data
        blob = s.request("blob", C.BIG_LEN)
        ok2 = isinstance(blob, bytes) and blob == C.blob_bytes(C.BIG_LEN)
        C.report("big", ok and ok2, "echo(16 MiB bin) %s; blob(16 MiB) %s" % (
            "intact" if ok else "WRONG", "intact" if ok2 else "WRONG"))

    def callback():
        # joint serve's callback(method, params) calls method on this client while this
        # client's call is pending; pynvim serves requests inside Session.run (greenlets).
        out = {}

        def on_request(name, args):
            name = name.decode() if isinstance(name, bytes) else name
            if name == "twice":
                return 2 * args[0]
            raise ErrorResponse([7, "nested \u2717"] if name == "fail_cb" else "unexpected %s" % name)

        def setup():
            try:
                out["twice"] = s.request("callback", "twice", [21])
                try:
                    out["fail"] = ("no error", s.request("callback", "fail_cb", []))
                except RemoteError as e:
                    out["fail"] = e.args[0]
            finally:
                s.stop()

        s.run(on_request, lambda *a: None, setup)
        d = C.diff(42, out.get("twice"), "callback(twice, [21])") or C.diff(
            [7, "nested \u2717"], out.get("fail"), "callback(fail_cb)")
        C.report("callback", d is None, d or "joint called twice(21) on the client -> 42; "
                 "fail_cb() -> error %r passed through" % (out["fail"],))

    for name, f in (("types", types), ("error", errors), ("notify", notify),
                    ("pipeline", pipeline), ("big", big), ("callback", callback)):
        try:
            f()
        except Exception as e:
            C.report(name, False, "exception: %r" % (e,))
    s.close()


if __name__ == "__main__":
    client(sys.argv[2:])
