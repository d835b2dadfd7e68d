"""The README example, UDP, and a server on stdio (a program started by its client)."""
import os
import re
import subprocess
import sys
import textwrap

import pytest

import joint

HERE = os.path.dirname(os.path.abspath(__file__))


def test_readme_example(tmp_path):
    with open(os.path.join(HERE, '..', 'README.md'), encoding='utf-8') as f:
        example = re.search(r'```python\n(.*?)```', f.read(), re.S).group(1)
    assert len(example.strip().splitlines()) <= 12
    script = tmp_path / 'example.py'
    script.write_text(example)
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == '5 3\n'


def test_udp(serve_in_thread):
    server = joint.Server()

    @server.method
    def add(a, b):
        return a + b

    uri = serve_in_thread(server, 'udp://127.0.0.1:0')
    assert uri.startswith('udp://127.0.0.1:')
    with joint.connect(uri, timeout=5) as c:
        assert c.call('add', 1, 2) == 3
        assert c.call('add', a=3, b=4) == 7


STDIO_SERVER = textwrap.dedent('''
    import joint
    client = joint.connect("stdio:")

    @client.method
    def add(a, b):
        return a + b

    @client.method
    def whoami():
        return joint.peer() is client

    client.serve()          # until the parent closes the pipe
''')


def test_stdio_server_started_by_its_client(tmp_path):
    script = tmp_path / 'plugin.py'
    script.write_text(STDIO_SERVER)
    with joint.spawn([sys.executable, str(script)], timeout=20) as c:
        assert c.call('add', 2, 40) == 42
        assert c.call('whoami') is True


def test_library_log_goes_to_the_joint_logger(caplog, serve_in_thread):
    import logging
    import socket
    import time
    caplog.set_level(logging.INFO, logger='joint')      # before the Server: its level is read then
    server = joint.Server()
    uri = serve_in_thread(server)
    host, port = uri[len('tcp://'):].rsplit(':', 1)
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b'\x93\x05\x01\x02')                   # not a MessagePack-RPC message
        s.settimeout(5)
        assert s.recv(100) == b''                        # joint closes the connection
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(r.levelno == logging.WARNING for r in caplog.records):
        time.sleep(0.02)
    warnings = [r.getMessage() for r in caplog.records if r.name == 'joint' and r.levelno == logging.WARNING]
    assert any('not a MessagePack-RPC message' in m for m in warnings), caplog.records
