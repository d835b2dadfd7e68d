"""Build step for the joint Python package.

``pip install bindings/python`` runs this: it builds libjoint with cargo for the repository
the package sits in (``cargo build --release -p joint``), then puts into the wheel, next to
the Python modules,

    joint/libjoint.so   the C library (loaded with cffi's ffi.dlopen, ABI mode)
    joint/_cdef.h       the cffi cdef, derived mechanically from include/joint.h

Environment:
    JOINT_SOURCE_DIR    the joint repository (default: two levels above this file)
    JOINT_LIBRARY       use this prebuilt libjoint.so instead of running cargo
    CARGO               the cargo to run (default: cargo from PATH or ~/.cargo/bin)
    JOINT_CARGO_ARGS    extra arguments for cargo build (e.g. "--offline" or "--locked")
    CC                  the C compiler used to preprocess the header (default: cc)
"""
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    try:
        from wheel.bdist_wheel import bdist_wheel
    except ImportError:
        bdist_wheel = None

HERE = os.path.dirname(os.path.abspath(__file__))


def _source_dir():
    root = os.environ.get('JOINT_SOURCE_DIR') or os.path.normpath(os.path.join(HERE, '..', '..'))
    if not (os.path.isfile(os.path.join(root, 'include', 'joint.h'))
            and os.path.isfile(os.path.join(root, 'Cargo.toml'))):
        sys.exit('joint: cannot find the joint repository at %s (include/joint.h, Cargo.toml); '
                 'build from a checkout (pip install path/to/joint/bindings/python) or set '
                 'JOINT_SOURCE_DIR' % root)
    return root


def _cargo():
    cargo = os.environ.get('CARGO') or shutil.which('cargo')
    if not cargo:
        home = os.path.join(os.path.expanduser('~'), '.cargo', 'bin', 'cargo')
        if os.path.isfile(home):
            cargo = home
    if not cargo:
        sys.exit('joint: cargo not found; install Rust (https://rustup.rs) or set JOINT_LIBRARY '
                 'to a prebuilt libjoint.so')
    return cargo


def build_library(root):
    """Run cargo; return the path of the libjoint.so it produced."""
    prebuilt = os.environ.get('JOINT_LIBRARY')
    if prebuilt:
        if not os.path.isfile(prebuilt):
            sys.exit('joint: JOINT_LIBRARY=%s does not exist' % prebuilt)
        return prebuilt
    cmd = [_cargo(), 'build', '--release', '-p', 'joint', '--lib',
           '--message-format=json-render-diagnostics']
    cmd += shlex.split(os.environ.get('JOINT_CARGO_ARGS', ''))
    print('joint: %s' % ' '.join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit('joint: cargo build failed (exit status %d)' % proc.returncode)
    found = None
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get('reason') == 'compiler-artifact' and msg.get('target', {}).get('name') == 'joint':
            for f in msg.get('filenames', []):
                if f.endswith('.so'):
                    found = f
    if not found:
        sys.exit('joint: cargo did not report a libjoint.so (is crate-type "cdylib" still set?)')
    return found


def generate_cdef(root):
    spec = importlib.util.spec_from_file_location('_joint_cdefgen', os.path.join(HERE, 'joint', '_cdefgen.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.generate(os.path.join(root, 'include', 'joint.h'))


class BuildPy(build_py):
    """The usual build_py, plus libjoint.so and _cdef.h in the built package."""

    def run(self):
        super().run()
        root = _source_dir()
        cdef = generate_cdef(root)        # first: fails fast without a C compiler
        lib = build_library(root)
        out = os.path.join(self.build_lib, 'joint')
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, '_cdef.h'), 'w', encoding='utf-8') as f:
            f.write(cdef)
        shutil.copyfile(lib, os.path.join(out, 'libjoint.so'))
        os.chmod(os.path.join(out, 'libjoint.so'), 0o755)

    def get_outputs(self, include_bytecode=1):
        out = os.path.join(self.build_lib, 'joint')
        return super().get_outputs(include_bytecode) + [
            os.path.join(out, '_cdef.h'), os.path.join(out, 'libjoint.so')]


class BinaryDistribution(Distribution):
    """A platform-specific distribution (it carries libjoint.so): installed to platlib."""

    def has_ext_modules(self):
        return True


cmdclass = {'build_py': BuildPy}
if bdist_wheel is not None:
    class BdistWheel(bdist_wheel):
        """The wheel holds a native library but no CPython extension: py3-none-<platform>."""

        def finalize_options(self):
            super().finalize_options()
            self.root_is_pure = False

        def get_tag(self):
            _, _, plat = super().get_tag()
            return 'py3', 'none', plat

    cmdclass['bdist_wheel'] = BdistWheel

setup(cmdclass=cmdclass, distclass=BinaryDistribution)
