// msgpack-rpc-lite 1.0.2 peer (server and client) for joint's interop matrix.
//
//   node peer.js server tcp HOST PORT | server unix PATH   serve; prints READY when listening
//   node peer.js client tcp HOST PORT | client unix PATH   run the checks against joint serve,
//                                                          one JSON line per check on stdout
// The server runs with msgpack-lite's default codec. The client decodes with {int64: true}
// (a msgpack-lite codec option) and sends 64-bit integers as int64-buffer objects, the only way
// JavaScript numbers can carry them exactly.
'use strict';
const rpc = require('msgpack-rpc-lite');
const msgpack = require('msgpack-lite');
const { ExtBuffer } = require('msgpack-lite/lib/ext-buffer');
const { Int64BE, Uint64BE } = require('int64-buffer');

const [role, transport, ...addr] = process.argv.slice(2);

function serve() {
  let last = null;
  const server = rpc.createServer();
  // Without this the process dies on ECONNRESET (an 'error' event nobody handles).
  server.on('connection', (socket) => socket.on('error', () => {}));
  server
    .on('echo', ([x], cb) => cb(null, x))
    .on('fail', (params, cb) => cb([42, 'boom \u2717', { detail: true }]))
    .on('note', (params) => { last = params; })
    .on('last_note', (params, cb) => cb(null, last))
    .on('sleep', ([ms, tag], cb) => setTimeout(() => cb(null, tag), ms));
  const ready = () => process.stdout.write('READY\n');
  if (transport === 'tcp') server.listen(+addr[1], addr[0], ready);
  else server.listen(addr[0], ready);
  process.on('SIGTERM', () => process.exit(0));
}

// ---- the client's checks --------------------------------------------------------------------

const NON_ASCII = 'h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \u{1F389}';
const BIG_LEN = 16 * 1024 * 1024;
const i64 = (s) => new Int64BE(s, 10);
const u64 = (s) => new Uint64BE(s, 10);

function items() {
  const it = [['nil', null], ['true', true], ['false', false]];
  const small = [0, -1, -32, -33, 127, 128, 255, 256, -128, -129, 65535, 65536, -32768, -32769,
    2147483647, -2147483648];
  for (const v of small) it.push(['int:' + v, v]);
  // Outside int32, msgpack-lite would pack a number as float64: send real 64-bit integers.
  for (const s of ['2147483648', '4294967295', '4294967296', '9007199254740992', '9223372036854775807',
    '9223372036854775808', '18446744073709551615']) it.push(['int:' + s, u64(s)]);
  for (const s of ['-2147483649', '-9223372036854775808']) it.push(['int:' + s, i64(s)]);
  it.push(['float64:1.5', 1.5], ['float64:-0.1', -0.1], ['float64:1e308', 1e308], ['float64:5e-324', 5e-324]);
  it.push(['str:empty', ''], ['str:ascii', 'ascii'], ['str:non-ascii', NON_ASCII], ['str:str8', 'x'.repeat(40)],
    ['str:str16', NON_ASCII.repeat(20)], ['str:str32', 'y'.repeat(70000)]);
  const bin16 = Buffer.alloc(300);
  for (let i = 0; i < 256; i++) bin16[i] = i;
  const bin32 = Buffer.alloc(70000);
  for (let i = 0; i < bin32.length; i++) bin32[i] = i % 256;
  it.push(['bin:empty', Buffer.alloc(0)], ['bin:bytes', Buffer.from([0, 1, 0x7f, 0x80, 0xfe, 0xff])],
    ['bin:bin16', bin16], ['bin:bin32', bin32]);
  it.push(['array:empty', []], ['array:nested', [1, [2, [3, [4, []]]], 'deep']],
    ['array:array16', Array.from({ length: 20 }, (_, i) => i)],
    ['array:array32', Array.from({ length: 70000 }, (_, i) => i)]);
  const map16 = {};
  for (let i = 0; i < 20; i++) map16['k' + String(i).padStart(2, '0')] = i;
  const map32 = {};
  for (let i = 0; i < 70000; i++) map32['k' + String(i).padStart(5, '0')] = i;
  it.push(['map:empty', {}], ['map:nested', { a: 1, nested: { k: [true, null, 'v'] }, '\u00fcml': '\u00e4' }],
    ['map:map16', map16], ['map:map32', map32]);
  // msgpack-lite's ExtBuffer takes the type as an unsigned byte (it cannot encode -5, 251 is -5).
  const ext = (type, bytes) => new ExtBuffer(Buffer.from(bytes), type & 0xff);
  const range = (n) => Array.from({ length: n }, (_, i) => i);
  it.push(['ext:fixext1', ext(1, [1])], ['ext:fixext2', ext(2, [1, 2])], ['ext:fixext4', ext(4, [1, 2, 3, 4])],
    ['ext:fixext8', ext(8, range(8))], ['ext:fixext16', ext(16, range(16))], ['ext:ext8', ext(5, [97, 98, 99])],
    ['ext:ext16', ext(127, new Array(300).fill(0))], ['ext:ext32', ext(6, range(70000).map((i) => i % 256))],
    ['ext:negative-type', ext(-5, [110, 101, 103])],
    ['ext:timestamp32', ext(-1, [0x5f, 0xee, 0x66, 0x00])]);
  return it;
}
const SKIP = {
  'map:int-keys': 'JavaScript objects have string keys only',
};

const isInt64 = (v) => Int64BE.isInt64BE(v) || Uint64BE.isUint64BE(v);
function kind(v) {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (isInt64(v)) return 'int';
  if (typeof v === 'string') return 'str';
  if (Buffer.isBuffer(v)) return 'bin';
  if (Array.isArray(v)) return 'array';
  if (v instanceof ExtBuffer) return 'ext';
  return 'map';
}
const big = (v) => (typeof v === 'number' ? BigInt(v) : BigInt(v.toString()));
const short = (v) => { const s = String(v); return s.length > 60 ? s.slice(0, 57) + '...' : s; };

// null if equal with types (as far as JavaScript can tell: 1.0 is an integer here), else why not.
function diff(e, a, path = '$') {
  const ke = kind(e), ka = kind(a);
  if (ke !== ka) return `${path}: expected ${ke} ${short(e)}, got ${ka} ${short(a)}`;
  switch (ke) {
    case 'int': return big(e) === big(a) ? null : `${path}: expected ${e}, got ${a}`;
    case 'bin': return e.equals(a) ? null : `${path}: bin differs`;
    case 'ext': return (e.type & 0xff) === (a.type & 0xff) && e.buffer.equals(a.buffer) ? null
      : `${path}: expected ext ${e.type}, got ext ${a.type}`;
    case 'array':
      if (e.length !== a.length) return `${path}: expected ${e.length} elements, got ${a.length}`;
      for (let i = 0; i < e.length; i++) { const d = diff(e[i], a[i], `${path}[${i}]`); if (d) return d; }
      return null;
    case 'map': {
      const ek = Object.keys(e).sort(), ak = Object.keys(a).sort();
      if (ek.join('\0') !== ak.join('\0')) return `${path}: keys ${ek} vs ${ak}`;
      for (const k of ek) { const d = diff(e[k], a[k], `${path}[${k}]`); if (d) return d; }
      return null;
    }
    default: return e === a || (e == null && a == null) ? null : `${path}: expected ${short(e)}, got ${short(a)}`;
  }
}

function report(check, ok, detail, extra = {}) {
  process.stdout.write(JSON.stringify({ check, ok, detail, ...extra }) + '\n');
}

async function client() {
  const codec = { decode: { int64: true } };
  const c = transport === 'tcp' ? rpc.createClient(+addr[1], addr[0], 0, codec)
    : new rpc.Client({ path: addr[0] }, codec);
  let socketError = null;
  c.on('error', (e) => { socketError = e; });
  // msgpack-rpc-lite never settles a request whose encoding throws: bound every call.
  const call = (method, ...params) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${method}: no answer in 60 s`)), 60000);
    c.request(method, ...params).then((r) => { clearTimeout(timer); resolve(r[0]); },
      (e) => { clearTimeout(timer); reject(e); });
  });

  async function types() {
    const chosen = items().filter(([n]) => !(n in SKIP));
    const vals = chosen.map(([, v]) => v);
    let d = diff(vals, await call('echo', vals));
    const cases = [
      [u64('9223372036854775807'), 0, u64('9223372036854775807')],
      [u64('9223372036854775807'), 1, u64('9223372036854775808')],
      [u64('18446744073709551614'), 1, u64('18446744073709551615')],
      [i64('-9223372036854775808'), 0, i64('-9223372036854775808')],
      [i64('-9223372036854775808'), u64('18446744073709551615'), u64('9223372036854775807')],
      [u64('4294967295'), 1, u64('4294967296')],
      [-1, -2147483648, i64('-2147483649')],
      [1.5, 0.25, 1.75],
      [1, 0.5, 1.5],
    ];
    for (const [a, b, s] of cases) d = d || diff(s, await call('add', a, b), `add(${a}, ${b})`);
    report('types', !d, d || `${vals.length} items echoed, ${cases.length} add() cases`,
      { items: chosen.map(([n]) => n), skipped: SKIP });
  }

  async function errors() {
    const details = [];
    let ok = true;
    for (const [method, params, want] of [['nope', [1], [2, 'no such method: nope']],
      ['add', ['x', 1], [1, 'add(a, b) needs two numbers']]]) {
      try {
        const r = await call(method, ...params);
        ok = false;
        details.push(`${method}: no error, result ${r}`);
      } catch (err) {
        const d = diff(want, err, method);
        ok = ok && !d;
        details.push(d || `${method} -> ${JSON.stringify(err)}`);
      }
    }
    ok = ok && (await call('echo', 'still alive')) === 'still alive';
    report('error', ok, details.join('; '));
  }

  async function notify() {
    await c.notify('note', 'notify \u2713', 42);
    const got = await call('last_notification');
    const d = diff(['note', ['notify \u2713', 42]], got);
    report('notify', !d, d || `last_notification() = ${JSON.stringify(got)}`);
  }

  async function pipeline() {
    const order = [];
    const plan = Array.from({ length: 1000 }, (_, k) => (k % 2 === 0
      ? ['sleep', [Math.floor((1000 - k) / 2)], null] : ['echo', [k], k]));
    const results = await Promise.all(plan.map(([m, p], k) => call(m, ...p).then((r) => { order.push(k); return r; })));
    const bad = results.filter((r, k) => diff(plan[k][2], r)).length;
    const reordered = order.some((k, i) => k !== i);
    report('pipeline', bad === 0 && order.length === 1000,
      `1000 calls, ${bad} wrong`, { reordered });
  }

  async function bigCheck() {
    const data = Buffer.alloc(BIG_LEN);
    for (let i = 0; i < BIG_LEN; i++) data[i] = i % 251;
    const got = await call('echo', data);
    const ok = Buffer.isBuffer(got) && got.equals(data);
    const blob = await call('blob', BIG_LEN);
    let ok2 = Buffer.isBuffer(blob) && blob.length === BIG_LEN;
    for (let i = 0; ok2 && i < BIG_LEN; i++) ok2 = blob[i] === i % 256;
    report('big', ok && ok2, `echo(16 MiB bin) ${ok ? 'intact' : 'WRONG'}; blob(16 MiB) ${ok2 ? 'intact' : 'WRONG'}`);
  }

  for (const [name, f] of [['types', types], ['error', errors], ['notify', notify], ['pipeline', pipeline],
    ['big', bigCheck]]) {
    try {
      await f();
    } catch (err) {
      report(name, false, `exception: ${err && err.stack ? err.stack.split('\n')[0] : JSON.stringify(err)}`
        + (socketError ? ` (socket: ${socketError.message})` : ''));
    }
  }
  c.close();
}

if (role === 'server') serve();
else client().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
