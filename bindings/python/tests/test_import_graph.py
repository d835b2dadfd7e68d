"""The package's modules import one way: each imports only modules before it in ORDER."""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'joint'

# What may import what: a module may import only those listed before it (_cdefgen is the
# build-time cdef generator, imported by nothing at run time).
ORDER = ['_errors', '_ffi', '_tls', '_core', '_workers', '_streams', '_client', '_server', '__init__']


def _type_only(tree):
    """The nodes under `if TYPE_CHECKING:`: imports for annotations, never run."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == 'TYPE_CHECKING':
            for stmt in node.body:
                skip.update(id(n) for n in ast.walk(stmt))
    return skip


def package_imports(path):
    """The package modules that `path` imports at run time, anywhere in the file (function
    bodies too; not the annotation-only imports under `if TYPE_CHECKING:`)."""
    found = set()
    tree = ast.parse(path.read_text(), str(path))
    type_only = _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split('.')[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('joint.'):
            found.add(node.module.split('.')[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split('.')[1] for a in node.names if a.name.startswith('joint.'))
    return found


def test_every_module_is_in_the_order():
    modules = {p.stem for p in PACKAGE.glob('*.py')} - {'_cdefgen'}
    assert modules == set(ORDER)


def test_modules_import_only_earlier_modules():
    for i, name in enumerate(ORDER):
        imported = package_imports(PACKAGE / (name + '.py'))
        later = imported - set(ORDER[:i]) - {'_cdefgen'}
        assert not later, '%s imports %s, which come after it in %s' % (name, sorted(later), ORDER)


def test_the_check_sees_a_cycle(tmp_path):
    # The checker itself: a function-level import of a later module counts.
    f = tmp_path / 'm.py'
    f.write_text('def f():\n    from . import _client\n    from ._server import Server\n')
    assert package_imports(f) == {'_client', '_server'}
    # Imports for annotations only do not count.
    f.write_text('from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._client import Peer\n')
    assert package_imports(f) == set()
