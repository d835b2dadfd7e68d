"""The cffi cdef is derived mechanically from include/joint.h and covers all of it."""
import os
import re

import pytest

import joint
from joint import _cdefgen, _ffi

from conftest import ROOT

HEADER = os.path.join(ROOT, 'include', 'joint.h')


@pytest.fixture(scope='module')
def header():
    if not os.path.isfile(HEADER):
        pytest.skip('include/joint.h not found (tests run outside the repository)')
    with open(HEADER, encoding='utf-8') as f:
        return f.read()


def test_every_header_function_is_declared_and_resolves(header):
    functions = _cdefgen.header_functions(header)
    assert len(functions) > 80, 'the header parser found too few functions: %r' % sorted(functions)
    declared = set(dir(_ffi.lib))
    missing = sorted(functions - declared)
    assert not missing, 'functions in include/joint.h missing from the cdef: %s' % missing
    for name in sorted(functions):
        fn = getattr(_ffi.lib, name)        # resolves the symbol in the bundled libjoint.so
        assert _ffi.ffi.typeof(fn).kind == 'function', name


def test_no_declaration_beyond_the_header(header):
    functions = _cdefgen.header_functions(header)
    declared = {n for n in dir(_ffi.lib) if n.startswith('joint_')}
    assert declared == functions


def test_integer_constants(header):
    for name, value in re.findall(r'^#define (JOINT_[A-Z0-9_]+) (-?\d+)\s*$', header, re.M):
        assert getattr(_ffi.lib, name) == int(value), name
    assert joint.RPC_INVALID_PARAMS == 1 and joint.RPC_NO_METHOD == 2


def test_bundled_cdef_matches_the_header(header):
    """A stale install (header changed, package not rebuilt) is caught here."""
    assert _ffi.CDEF == _cdefgen.generate(HEADER)


def test_version_matches_the_header(header):
    version = re.search(r'#define JOINT_VERSION_STRING "([^"]+)"', header).group(1)
    assert joint.library_version() == version
