//! The fuzz targets (`joint::fuzz_targets`, run by cargo-fuzz from `fuzz/`) on stable, as
//! ordinary tests: every file of `tests/corpus/` through all three targets, every file of
//! `fuzz/corpus/<target>/` (when present) through its target, and a fixed-seed
//! pseudo-random batch through each target, so the targets are exercised without a corpus
//! or a nightly toolchain. `scripts/fuzz.sh` runs the real fuzzers.
//!
//! A failing input is reported by file name (or batch index and bytes); replay one with
//! `cargo +nightly fuzz run <target> <file>` in `fuzz/`, or with this test's `replay`
//! (`JOINT_FUZZ_REPLAY=<target>:<file> cargo test --release --test fuzz_corpus replay`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use joint::codec;
use joint::fuzz_targets::{decoder, session_bytes, session_messages};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 3] = [("decoder", decoder), ("session_bytes", session_bytes), ("session_messages", session_messages)];

/// Inputs per target in the pseudo-random batch.
const BATCH: usize = 20_000;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Regular files of `dir`, sorted (none if it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

thread_local! {
    /// Set while `run` catches a target's panic: the hook stays quiet then (the message is
    /// collected and reported at the end instead).
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `target` on `input`; a panic becomes an error message naming `what`.
fn run(target: Target, name: &str, what: &str, input: &[u8]) -> Result<(), String> {
    CATCHING.with(|c| c.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| target(input)));
    CATCHING.with(|c| c.set(false));
    result.map_err(|e| {
        let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        let shown = &input[..input.len().min(64)];
        format!("{name} failed on {what} ({} bytes, starting {shown:02x?}): {msg}", input.len())
    })
}

fn check(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n"));
}

/// Install the quiet-while-catching panic hook (JOINT_FUZZ_VERBOSE=1 shows every panic).
fn quiet() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(|c| c.get()) || std::env::var_os("JOINT_FUZZ_VERBOSE").is_some() {
                default(info);
            }
        }));
    });
}

#[test]
fn tests_corpus_through_every_target() {
    quiet();
    let corpus = files(&root().join("tests/corpus"));
    assert!(corpus.len() > 100, "tests/corpus/ is missing");
    let mut failures = Vec::new();
    for file in &corpus {
        let data = std::fs::read(file).unwrap();
        let what = file.file_name().unwrap().to_string_lossy();
        for (name, target) in TARGETS {
            // As is, and behind each target's control byte(s): a zero byte keeps the input
            // intact for decoder and session_bytes (mode 0), 1 selects the negotiated mode.
            for prefix in [&[][..], &[0x00], &[0x01], &[0x02]] {
                let input = [prefix, &data[..]].concat();
                if let Err(e) = run(target, name, &format!("tests/corpus/{what} behind {prefix:02x?}"), &input) {
                    failures.push(e);
                }
            }
        }
    }
    check(failures);
}

fn fuzz_corpus(name: &str, target: Target) {
    quiet();
    let dir = root().join("fuzz/corpus").join(name);
    let mut failures = Vec::new();
    for file in files(&dir) {
        let data = std::fs::read(&file).unwrap();
        if let Err(e) = run(target, name, &file.display().to_string(), &data) {
            failures.push(e);
        }
    }
    check(failures);
}

#[test]
fn fuzz_corpus_decoder() {
    fuzz_corpus("decoder", decoder);
}

#[test]
fn fuzz_corpus_session_bytes() {
    fuzz_corpus("session_bytes", session_bytes);
}

#[test]
fn fuzz_corpus_session_messages() {
    fuzz_corpus("session_messages", session_messages);
}

/// The inputs in `fuzz/crashes-found/` (named `<target>-...`) that made a target fail when
/// they were found; ignored because they fail until the bug they show is fixed.
#[test]
#[ignore]
fn crashes_found() {
    quiet();
    let mut failures = Vec::new();
    for file in files(&root().join("fuzz/crashes-found")) {
        let fname = file.file_name().unwrap().to_string_lossy().to_string();
        let Some(&(name, target)) = TARGETS.iter().find(|(n, _)| fname.starts_with(&format!("{n}-"))) else { continue };
        let data = std::fs::read(&file).unwrap();
        if let Err(e) = run(target, name, &fname, &data) {
            failures.push(e);
        }
    }
    check(failures);
}

/// One input: `JOINT_FUZZ_REPLAY=<target>:<path>`, with the panic message printed.
#[test]
fn replay() {
    let Ok(spec) = std::env::var("JOINT_FUZZ_REPLAY") else { return };
    let (name, path) = spec.split_once(':').expect("JOINT_FUZZ_REPLAY=<target>:<path>");
    let (_, target) = TARGETS.iter().find(|(n, _)| *n == name).expect("unknown target");
    target(&std::fs::read(path).unwrap());
}

// ---- the pseudo-random batch ----------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Bytes that are MessagePack structure more often than uniform bytes are.
const ALPHABET: &[u8] = &[
    0x90, 0x91, 0x92, 0x93, 0x94, 0x98, 0x80, 0x81, 0x82, 0x00, 0x01, 0x02, 0x05, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x7f, 0xc0,
    0xc1, 0xc2, 0xc3, 0xa0, 0xa1, 0xa3, b'm', 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd3, 0xca, 0xcb, 0xd4, 0xd8, 0xc7, 0xc9, 0xc4, 0xc5, 0xc6, 0xd9, 0xda,
    0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xff, 0xe0,
];

/// A few valid messages (and a little noise), as the peer of a session would send them.
fn messages(rng: &mut Rng, out: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(6) {
        let id = rng.below(8) as u32;
        let mut params = vec![0x92, 0x01, 0xa1, b'x'];
        if rng.below(6) == 0 {
            params = vec![0x91];
            codec::write_bin(&mut params, &vec![7u8; rng.below(3000)]);
        }
        match rng.below(12) {
            0 | 1 => codec::encode_request(out, id, b"add", &params),
            2 | 3 => codec::encode_response(out, id, codec::NIL, &params),
            4 => codec::encode_notification(out, b"n", &params),
            5 => codec::encode_call(out, id, b"c", &params, None, rng.below(8) as u32, 0, 4),
            6 => codec::encode_item(out, 16 + 1 + rng.below(5) as u64, id, &[0x05]),
            7 => codec::encode_signal(out, codec::TYPE_END + rng.below(2) as u64, id),
            8 => codec::encode_credit(out, codec::TYPE_MORE_YIELDS + rng.below(2) as u64, id, rng.below(10) as u32),
            9 => {
                let mut inner = Vec::new();
                codec::encode_request(&mut inner, id, b"big", &params);
                let total = inner.len() as u64;
                let step = 1 + rng.below(400);
                for chunk in inner.chunks(step) {
                    codec::encode_fragment(out, rng.below(2) as u32, total, chunk);
                }
            }
            10 => {
                let mut hello = vec![0x92, 0x01, 0x81];
                codec::write_str(&mut hello, b"window");
                codec::write_uint(&mut hello, rng.below(10) as u64);
                codec::encode_request(out, id, b"joint.hello", &hello);
            }
            _ => out.extend((0..rng.below(4)).map(|_| ALPHABET[rng.below(ALPHABET.len())])),
        }
    }
    // A mutated byte now and then.
    if !out.is_empty() && rng.below(3) == 0 {
        let at = rng.below(out.len());
        out[at] = rng.byte();
    }
}

fn batch(name: &str, target: Target, make: fn(&mut Rng) -> Vec<u8>) {
    quiet();
    let mut rng = Rng(0x6a6f_696e_7466_757a ^ name.len() as u64);
    let mut failures = Vec::new();
    for i in 0..BATCH {
        let input = make(&mut rng);
        if let Err(e) = run(target, name, &format!("batch input {i}"), &input) {
            // Kept for replaying (see the top of this file).
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz_corpus");
            let file = dir.join(format!("{name}-batch-{i}.bin"));
            let saved = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&file, &input));
            failures.push(if saved.is_ok() { format!("{e}\n  saved as {}", file.display()) } else { e });
            if failures.len() >= 5 {
                break;
            }
        }
    }
    check(failures);
}

#[test]
fn batch_decoder() {
    batch("decoder", decoder, |rng| {
        let mut v = vec![rng.byte()];
        if rng.below(2) == 0 {
            messages(rng, &mut v);
        } else {
            let n = rng.below(200);
            v.extend((0..n).map(|_| if rng.below(4) == 0 { rng.byte() } else { ALPHABET[rng.below(ALPHABET.len())] }));
        }
        v
    });
}

#[test]
fn batch_session_bytes() {
    batch("session_bytes", session_bytes, |rng| {
        let mut v = vec![rng.byte()];
        messages(rng, &mut v);
        v
    });
}

#[test]
fn batch_session_messages() {
    batch("session_messages", session_messages, |rng| {
        let n = rng.below(400);
        (0..n).map(|_| rng.byte()).collect()
    });
}
