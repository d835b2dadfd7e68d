// msgpack-rpc-java 0.7.1 (org.msgpack.rpc, Netty 3, msgpack-java 0.6) as a server and a client,
// for joint's interop matrix.
//
//   java -cp ... interop.Peer server tcp HOST PORT    serve; prints READY when listening
//   java -cp ... interop.Peer client tcp HOST PORT    run the checks against joint serve,
//                                                     one JSON line per check on stdout
// msgpack-java 0.6 implements the pre-2013 MessagePack spec: one "raw" type for str and bin,
// no str8, no bin, no ext (0.6.12, its last release, reads str8 and bin as raw). The peer
// probes its codec at start-up and leaves out what the codec cannot carry, naming it.
package interop;

import java.io.PrintStream;
import java.math.BigInteger;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.msgpack.MessagePack;
import org.msgpack.rpc.Client;
import org.msgpack.rpc.Future;
import org.msgpack.rpc.Request;
import org.msgpack.rpc.Server;
import org.msgpack.rpc.dispatcher.Dispatcher;
import org.msgpack.rpc.error.NoMethodError;
import org.msgpack.rpc.loop.EventLoop;
import org.msgpack.type.ArrayValue;
import org.msgpack.type.MapValue;
import org.msgpack.type.Value;
import org.msgpack.type.ValueFactory;

public class Peer {
    static final MessagePack MP = new MessagePack();
    static final PrintStream OUT = new PrintStream(System.out, true, StandardCharsets.UTF_8);

    static boolean canRead(int... bytes) {
        byte[] b = new byte[bytes.length];
        for (int i = 0; i < b.length; i++) b[i] = (byte) bytes[i];
        try {
            MP.read(b);
            return true;
        } catch (Exception e) {
            return false;
        }
    }

    static final boolean READS_STR8 = canRead(0xd9, 1, 'z');
    static final boolean READS_BIN = canRead(0xc4, 1, 'z');

    static Value nil() { return ValueFactory.createNilValue(); }
    static Value i(long v) { return ValueFactory.createIntegerValue(v); }
    static Value u(String v) { return ValueFactory.createIntegerValue(new BigInteger(v)); }
    static Value s(String v) { return ValueFactory.createRawValue(v); }
    static Value arr(Value... v) { return ValueFactory.createArrayValue(v); }
    static Value map(Value... kv) { return ValueFactory.createMapValue(kv); }

    // ---- server ---------------------------------------------------------------------------

    static volatile Value lastNote = nil();

    static void serve(String host, int port) throws Exception {
        final EventLoop loop = EventLoop.defaultEventLoop();
        Server srv = new Server(loop);
        srv.serve(new Dispatcher() {
            public void dispatch(final Request req) throws Exception {
                ArrayValue args = req.getArguments().asArrayValue();
                switch (req.getMethodName()) {
                    case "echo":
                        req.sendResult(args.get(0));
                        break;
                    case "fail":
                        req.sendError(arr(i(42), s("boom \u2717")));
                        break;
                    case "note":
                        synchronized (Peer.class) {
                            lastNote = args;
                            Peer.class.notifyAll();
                        }
                        break;
                    case "last_note":
                        // Messages are handled on a worker pool, so this request can overtake the
                        // notification sent before it: wait (bounded) until the note is in.
                        synchronized (Peer.class) {
                            long deadline = System.currentTimeMillis() + 10000;
                            while (lastNote.isNilValue() && System.currentTimeMillis() < deadline) {
                                Peer.class.wait(100);
                            }
                        }
                        req.sendResult(lastNote);
                        break;
                    case "sleep":
                        final Value tag = args.get(1);
                        loop.getScheduledExecutor().schedule(() -> req.sendResult(tag),
                                args.get(0).asIntegerValue().getLong(), TimeUnit.MILLISECONDS);
                        break;
                    default: // the library turns this into its own error reply
                        throw new NoMethodError(req.getMethodName());
                }
            }
        });
        srv.listen(new InetSocketAddress(host, port));
        OUT.println("READY");
        loop.join();
    }

    // ---- client checks --------------------------------------------------------------------

    static final String NON_ASCII = "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \uD83C\uDF89";
    static final int BIG_LEN = 16 * 1024 * 1024;

    static List<Object[]> items() {
        List<Object[]> it = new ArrayList<>();
        it.add(new Object[] {"nil", nil()});
        it.add(new Object[] {"true", ValueFactory.createBooleanValue(true)});
        it.add(new Object[] {"false", ValueFactory.createBooleanValue(false)});
        long[] ints = {0, -1, -32, -33, 127, 128, 255, 256, -128, -129, 65535, 65536, -32768, -32769,
            2147483647L, 2147483648L, 4294967295L, 4294967296L, -2147483648L, -2147483649L,
            1L << 53, Long.MIN_VALUE, Long.MAX_VALUE};
        for (long v : ints) it.add(new Object[] {"int:" + v, i(v)});
        it.add(new Object[] {"int:9223372036854775808", u("9223372036854775808")});
        it.add(new Object[] {"int:18446744073709551615", u("18446744073709551615")});
        it.add(new Object[] {"float64:1.5", ValueFactory.createFloatValue(1.5)});
        it.add(new Object[] {"float64:-0.1", ValueFactory.createFloatValue(-0.1)});
        it.add(new Object[] {"float64:1e308", ValueFactory.createFloatValue(1e308)});
        it.add(new Object[] {"float64:5e-324", ValueFactory.createFloatValue(5e-324)});
        it.add(new Object[] {"float32:0.25", ValueFactory.createFloatValue(0.25f)});
        it.add(new Object[] {"float32:-1.5", ValueFactory.createFloatValue(-1.5f)});
        it.add(new Object[] {"str:empty", s("")});
        it.add(new Object[] {"str:ascii", s("ascii")});
        it.add(new Object[] {"str:non-ascii", s(NON_ASCII)});
        it.add(new Object[] {"str:str8", s("x".repeat(40))});
        it.add(new Object[] {"str:str16", s(NON_ASCII.repeat(20))});
        it.add(new Object[] {"str:str32", s("y".repeat(70000))});
        Value[] a16 = new Value[20];
        Value[] m16 = new Value[40];
        for (int k = 0; k < 20; k++) {
            a16[k] = i(k);
            m16[2 * k] = s(String.format("k%02d", k));
            m16[2 * k + 1] = i(k);
        }
        it.add(new Object[] {"array:empty", arr()});
        it.add(new Object[] {"array:nested", arr(i(1), arr(i(2), arr(i(3), arr(i(4), arr()))), s("deep"))});
        it.add(new Object[] {"array:array16", arr(a16)});
        Value[] a32 = new Value[70000];
        Value[] m32 = new Value[140000];
        for (int k = 0; k < 70000; k++) {
            a32[k] = i(k);
            m32[2 * k] = s(String.format("k%05d", k));
            m32[2 * k + 1] = i(k);
        }
        it.add(new Object[] {"array:array32", arr(a32)});
        it.add(new Object[] {"map:empty", map()});
        it.add(new Object[] {"map:nested", map(s("a"), i(1), s("nested"),
            map(s("k"), arr(ValueFactory.createBooleanValue(true), nil(), s("v"))), s("\u00fcml"), s("\u00e4"))});
        it.add(new Object[] {"map:map16", map(m16)});
        it.add(new Object[] {"map:map32", map(m32)});
        it.add(new Object[] {"map:int-keys", map(i(1), s("one"), i(-1), s("minus one"))});
        return it;
    }

    static Map<String, String> skipped() {
        Map<String, String> skip = new LinkedHashMap<>();
        String noBin = "msgpack-java 0.6 packs byte[] as the old raw (str) type: it cannot send bin";
        for (String b : new String[] {"bin:empty", "bin:bytes", "bin:bin16", "bin:bin32"}) skip.put(b, noBin);
        String noExt = "msgpack-java 0.6 has no ext type";
        for (String e : new String[] {"ext:fixext1", "ext:fixext2", "ext:fixext4", "ext:fixext8", "ext:fixext16",
            "ext:ext8", "ext:ext16", "ext:ext32", "ext:negative-type", "ext:timestamp32"}) skip.put(e, noExt);
        if (!READS_STR8) {
            String why = "joint echoes a 32..255-byte string as str8, which this msgpack-java cannot read "
                + "(str:non-ascii is 32 bytes of UTF-8)";
            skip.put("str:non-ascii", why);
            skip.put("str:str8", why);
        }
        return skip;
    }

    static String kind(Value v) {
        if (v.isNilValue()) return "nil";
        if (v.isBooleanValue()) return "bool";
        if (v.isIntegerValue()) return "int";
        if (v.isFloatValue()) return v.getClass().getSimpleName().contains("Double") ? "float64" : "float32";
        if (v.isRawValue()) return "raw";
        if (v.isArrayValue()) return "array";
        return "map";
    }

    static String diff(Value e, Value a, String path) {
        String ke = kind(e), ka = kind(a);
        if (!ke.equals(ka)) return path + ": expected " + ke + " " + e + ", got " + ka + " " + a;
        switch (ke) {
            case "int":
                if (!e.asIntegerValue().getBigInteger().equals(a.asIntegerValue().getBigInteger()))
                    return path + ": expected " + e + ", got " + a;
                return null;
            case "float32": case "float64":
                if (e.asFloatValue().getDouble() != a.asFloatValue().getDouble())
                    return path + ": expected " + e + ", got " + a;
                return null;
            case "raw":
                if (!java.util.Arrays.equals(e.asRawValue().getByteArray(), a.asRawValue().getByteArray()))
                    return path + ": raw differs";
                return null;
            case "array": {
                Value[] x = e.asArrayValue().getElementArray(), y = a.asArrayValue().getElementArray();
                if (x.length != y.length) return path + ": expected " + x.length + " elements, got " + y.length;
                for (int k = 0; k < x.length; k++) {
                    String d = diff(x[k], y[k], path + "[" + k + "]");
                    if (d != null) return d;
                }
                return null;
            }
            case "map": {
                Value[] x = e.asMapValue().getKeyValueArray(), y = a.asMapValue().getKeyValueArray();
                if (x.length != y.length) return path + ": expected " + x.length / 2 + " keys, got " + y.length / 2;
                for (int k = 0; k < x.length; k++) { // joint keeps the order of map entries
                    String d = diff(x[k], y[k], path + "{" + k / 2 + "}");
                    if (d != null) return d;
                }
                return null;
            }
            default:
                return e.equals(a) ? null : path + ": expected " + e + ", got " + a;
        }
    }

    static String json(Object o) {
        if (o == null) return "null";
        if (o instanceof Boolean) return o.toString();
        if (o instanceof Map) {
            StringBuilder b = new StringBuilder("{");
            for (Map.Entry<?, ?> en : ((Map<?, ?>) o).entrySet()) {
                if (b.length() > 1) b.append(',');
                b.append(json(en.getKey().toString())).append(':').append(json(en.getValue()));
            }
            return b.append('}').toString();
        }
        if (o instanceof List) {
            StringBuilder b = new StringBuilder("[");
            for (Object x : (List<?>) o) {
                if (b.length() > 1) b.append(',');
                b.append(json(x));
            }
            return b.append(']').toString();
        }
        StringBuilder b = new StringBuilder("\"");
        for (char c : o.toString().toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    static void report(String check, boolean ok, String detail, Map<String, Object> extra) {
        Map<String, Object> rec = new LinkedHashMap<>();
        rec.put("check", check);
        rec.put("ok", ok);
        rec.put("detail", detail);
        if (extra != null) rec.putAll(extra);
        OUT.println(json(rec));
    }

    static class Remote extends Exception {
        final Value error;
        Remote(Value error) { super(String.valueOf(error)); this.error = error; }
    }

    static Client client;

    static Value call(String method, Object... args) throws Exception {
        Future<Value> f = client.callAsyncApply(method, args);
        f.join(60, TimeUnit.SECONDS);
        Value err = f.getError();
        if (err != null && !err.isNilValue()) throw new Remote(err);
        return f.getResult();
    }

    interface Check { void run() throws Exception; }

    static void client(String host, int port) throws Exception {
        EventLoop loop = EventLoop.defaultEventLoop();
        client = new Client(host, port, loop);
        client.setRequestTimeout(60);
        Map<String, Check> checks = new LinkedHashMap<>();
        checks.put("types", () -> {
            Map<String, String> skip = skipped();
            List<String> names = new ArrayList<>();
            List<Value> vals = new ArrayList<>();
            for (Object[] it : items()) {
                if (!skip.containsKey(it[0])) {
                    names.add((String) it[0]);
                    vals.add((Value) it[1]);
                }
            }
            Value sent = ValueFactory.createArrayValue(vals.toArray(new Value[0]));
            String d = diff(sent, call("echo", sent), "$");
            Value[][] cases = {
                {i(Long.MAX_VALUE), i(0), i(Long.MAX_VALUE)},
                {i(Long.MAX_VALUE), i(1), u("9223372036854775808")},
                {u("18446744073709551614"), i(1), u("18446744073709551615")},
                {i(Long.MIN_VALUE), i(0), i(Long.MIN_VALUE)},
                {i(Long.MIN_VALUE), u("18446744073709551615"), i(Long.MAX_VALUE)},
                {i(4294967295L), i(1), i(4294967296L)},
                {i(-1), i(-2147483648L), i(-2147483649L)},
                {ValueFactory.createFloatValue(1.5), ValueFactory.createFloatValue(0.25), ValueFactory.createFloatValue(1.75)},
                {i(1), ValueFactory.createFloatValue(0.5), ValueFactory.createFloatValue(1.5)},
            };
            for (Value[] c : cases) {
                if (d != null) break;
                d = diff(c[2], call("add", c[0], c[1]), "add(" + c[0] + ", " + c[1] + ")");
            }
            Map<String, Object> extra = new LinkedHashMap<>();
            extra.put("items", names);
            extra.put("skipped", skip);
            report("types", d == null, d != null ? d : vals.size() + " items echoed, " + cases.length + " add() cases", extra);
        });
        checks.put("error", () -> {
            boolean ok = true;
            List<String> details = new ArrayList<>();
            Object[][] cases = {
                {"nope", new Object[] {1}, arr(i(2), s("no such method: nope"))},
                {"add", new Object[] {"x", 1}, arr(i(1), s("add(a, b) needs two numbers"))},
            };
            for (Object[] c : cases) {
                try {
                    Value r = call((String) c[0], (Object[]) c[1]);
                    ok = false;
                    details.add(c[0] + ": no error, result " + r);
                } catch (Remote e) {
                    String d = diff((Value) c[2], e.error, (String) c[0]);
                    ok = ok && d == null;
                    details.add(d != null ? d : c[0] + " -> " + e.error);
                }
            }
            ok = ok && diff(s("still alive"), call("echo", "still alive"), "echo") == null;
            report("error", ok, String.join("; ", details), null);
        });
        checks.put("notify", () -> {
            client.notifyApply("note", new Object[] {"notify \u2713", 42});
            Value got = call("last_notification");
            String d = diff(arr(s("note"), arr(s("notify \u2713"), i(42))), got, "last_notification()");
            report("notify", d == null, d != null ? d : "last_notification() = " + got, null);
        });
        checks.put("pipeline", () -> {
            int n = 1000;
            List<Future<Value>> fs = new ArrayList<>();
            final List<Integer> order = Collections.synchronizedList(new ArrayList<>());
            for (int k = 0; k < n; k++) {
                final int kk = k;
                Future<Value> f = k % 2 == 0 ? client.callAsyncApply("sleep", new Object[] {n - k})
                                             : client.callAsyncApply("echo", new Object[] {k});
                f.attachCallback(() -> order.add(kk));
                fs.add(f);
            }
            int bad = 0;
            for (int k = 0; k < n; k++) {
                Future<Value> f = fs.get(k);
                f.join(60, TimeUnit.SECONDS);
                Value want = k % 2 == 0 ? nil() : i(k);
                Value err = f.getError();
                if ((err != null && !err.isNilValue()) || f.getResult() == null || diff(want, f.getResult(), "") != null) bad++;
            }
            // A future's callback runs after join() may already have returned (on the
            // library's I/O thread), so give the last ones a moment before counting.
            long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (order.size() < n && System.nanoTime() < until) Thread.sleep(1);
            boolean reordered;
            synchronized (order) {
                List<Integer> sorted = new ArrayList<>(order);
                Collections.sort(sorted);
                reordered = !sorted.equals(order);
            }
            Map<String, Object> extra = new LinkedHashMap<>();
            extra.put("reordered", reordered);
            report("pipeline", bad == 0 && order.size() == n,
                n + " calls, " + bad + " wrong", extra);
        });
        checks.put("big", () -> {
            // It cannot send bin: byte[] goes out as the old raw (str) type, here not valid UTF-8.
            // blob() answers bin, read as raw if this msgpack-java can.
            byte[] data = new byte[BIG_LEN];
            for (int k = 0; k < BIG_LEN; k++) data[k] = (byte) (k % 251);
            Value got = call("echo", (Object) data);
            boolean ok = got.isRawValue() && java.util.Arrays.equals(got.asRawValue().getByteArray(), data);
            String blobDetail = "blob(16 MiB bin) left out: this msgpack-java cannot read bin";
            boolean ok2 = true;
            if (READS_BIN) {
                byte[] b = call("blob", BIG_LEN).asRawValue().getByteArray();
                ok2 = b.length == BIG_LEN;
                for (int k = 0; ok2 && k < BIG_LEN; k++) ok2 = b[k] == (byte) k;
                blobDetail = "blob(16 MiB bin) " + (ok2 ? "intact" : "WRONG");
            }
            report("big", ok && ok2, "echo(16 MiB of bytes, sent as str) " + (ok ? "intact" : "WRONG") + "; " + blobDetail, null);
        });
        for (Map.Entry<String, Check> c : checks.entrySet()) {
            try {
                c.getValue().run();
            } catch (Throwable e) {
                report(c.getKey(), false, "exception: " + e, null);
            }
        }
        client.close();
        loop.shutdown();
    }

    public static void main(String[] argv) throws Exception {
        if (argv.length != 4 || !argv[1].equals("tcp")) {
            System.err.println("usage: Peer server|client tcp HOST PORT (TCP only)");
            System.exit(64);
        }
        if (argv[0].equals("server")) serve(argv[2], Integer.parseInt(argv[3]));
        else client(argv[2], Integer.parseInt(argv[3]));
        System.exit(0);
    }
}
