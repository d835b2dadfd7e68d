"""Derive the cffi cdef mechanically from include/joint.h.

Used at build time by setup.py (the result is bundled as ``joint/_cdef.h``), by the test that
checks the cdef covers the header, and as a fallback when the package runs from a source tree.
No third-party imports: setup.py loads this file by path, before anything is installed.

The header goes through the C preprocessor (``cc -E -P``) with ``JOINT_API`` defined empty and
every ``#include <...>`` it names replaced by an empty stub, so the output holds only joint's
own declarations; the fixed-width types those headers would define (``int32_t``, ``size_t``,
``bool``) are built into cffi. Integer ``#define JOINT_*`` constants are kept (``-dD``) and
anything cffi cannot parse (attributes) is stripped.
"""
import os
import re
import shlex
import shutil
import subprocess
import tempfile

_INCLUDE = re.compile(r'^\s*#\s*include\s*<([^>]+)>', re.M)
_INT_DEFINE = re.compile(r'^#define (JOINT_[A-Z0-9_]+) (-?(?:0x[0-9A-Fa-f]+|\d+))$')
_ATTRIBUTE = re.compile(r'__attribute__\s*\(\((?:[^()]|\([^()]*\))*\)\)')
_FUNCTION = re.compile(r'\b(joint_[a-z0-9_]+)\s*\(')


def header_functions(header_text: str) -> 'set[str]':
    """Names of the functions the header declares with JOINT_API (from the raw text, without
    the preprocessor: the cdef is checked against this)."""
    text = re.sub(r'/\*.*?\*/', ' ', header_text, flags=re.S)
    text = re.sub(r'//[^\n]*', ' ', text)
    text = '\n'.join(ln for ln in text.splitlines() if not ln.lstrip().startswith('#'))
    names = set()
    for decl in text.split(';'):
        if re.search(r'\bJOINT_API\b', decl):
            m = _FUNCTION.search(decl)
            if m:
                names.add(m.group(1))
    return names


def _compiler() -> 'list[str]':
    cc = os.environ.get('CC')
    if cc:
        return shlex.split(cc)
    for name in ('cc', 'gcc', 'clang'):
        if shutil.which(name):
            return [name]
    raise RuntimeError('joint: a C compiler (cc) is needed to preprocess include/joint.h; '
                       'install one (apt-get install gcc) or set CC')


def generate(header_path: str) -> str:
    """The cdef text for the header at ``header_path``."""
    with open(header_path, encoding='utf-8') as f:
        text = f.read()
    with tempfile.TemporaryDirectory(prefix='joint-cdef-') as stubs:
        for inc in set(_INCLUDE.findall(text)):
            path = os.path.join(stubs, inc)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, 'w').close()
        base = _compiler() + ['-E', '-P', '-nostdinc', '-I', stubs, '-DJOINT_API=',
                              '-x', 'c', header_path]

        def run(extra: 'list[str]') -> str:
            try:
                return subprocess.run(base[:1] + extra + base[1:], check=True, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout
            except subprocess.CalledProcessError as e:
                raise RuntimeError('joint: preprocessing %s failed:\n%s' % (header_path, e.stderr))
        decls = run([])
        macros = run(['-dD'])
    defines: 'list[str]' = []
    for line in macros.splitlines():
        m = _INT_DEFINE.match(line.strip())
        if m:
            defines.append('#define %s %s' % m.groups())
    decls = _ATTRIBUTE.sub('', decls)
    lines = [ln.rstrip() for ln in decls.splitlines() if ln.strip()]
    return ('/* Generated from %s by joint/_cdefgen.py; do not edit. */\n'
            % os.path.basename(header_path)) + '\n'.join(defines + lines) + '\n'


if __name__ == '__main__':
    import sys
    sys.stdout.write(generate(sys.argv[1]))
