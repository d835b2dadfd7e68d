//! Child processes for the CLI's end-to-end tests: a guard that kills its child, the lines a
//! pipe carries, a process that announces `listening on URI`, and whether Neovim is here.
//! Each test file uses what it needs of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

pub const JOINT: &str = env!("CARGO_BIN_EXE_joint");
/// Longest any single wait may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(30);

/// A child process, killed and reaped when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe { libc::kill(self.0.id() as libc::pid_t, signal) };
    }
}

/// Lines a child writes on a pipe, as they come.
pub fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A started process that printed `listening on URI` on stderr: its guard, the URI, and the
/// lines of its stdout.
pub fn start_listening(cmd: &mut Command) -> (Guard, String, mpsc::Receiver<String>) {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Guard(cmd.spawn().expect("spawn joint"));
    let stdout = lines(child.0.stdout.take().expect("piped"));
    let stderr = lines(child.0.stderr.take().expect("piped"));
    let line = stderr.recv_timeout(LIMIT).expect("a 'listening on' line");
    let uri = line.strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected line: {line}")).to_string();
    (child, uri, stdout)
}

/// `joint serve` on a free port of 127.0.0.1, and its URI.
pub fn serve() -> (Guard, String) {
    let (guard, uri, _) = start_listening(Command::new(JOINT).args(["serve", "--listen", "tcp://127.0.0.1:0"]));
    (guard, uri)
}

/// Whether `nvim` runs here; where JOINT_REQUIRE_NVIM is set (CI), its absence fails the test.
pub fn have_nvim() -> bool {
    let found = Command::new("nvim").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !found {
        assert!(std::env::var_os("JOINT_REQUIRE_NVIM").is_none(), "nvim is not on PATH and JOINT_REQUIRE_NVIM is set");
        eprintln!("NOTICE: nvim is not on PATH; skipping this test");
    }
    found
}
