"""One module per file in the space folders, however it is imported.

The space folders keep the authors' names (201-space/, DARTS-space/), which are not Python
names, so they are installed as the packages `space201` and `darts_space`. The authors'
idiom, `cd DARTS-space && python -c "import genotypes, model"`, imports the same files
under their bare names. Without care each file would load twice (`genotypes` and
`darts_space.genotypes`), with two different `Genotype` classes.

`share_modules`, called by each space package's `__init__`, makes the two names one module:
a bare-named module already loaded from the folder becomes the package's module too, and a
finder answers any later bare import of a file of the folder with the package's module.

`find_space_packages`, called when `common` is imported, makes `space201` and `darts_space`
the folders beside that `common`: a checkout that was not installed (a bare GPU machine,
`PYTHONPATH=.`) imports them too, and a second checkout on PYTHONPATH never mixes its
`common` with the installed one's space folders.
"""
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACE_PACKAGES = {"space201": "201-space", "darts_space": "DARTS-space"}  # pyproject.toml's package-dir

_folders = {}  # resolved folder -> package name


def _package_name(origin):
    return _folders.get(Path(origin).resolve().parent) if origin else None


class _PackageModule(importlib.abc.Loader):
    """Loads a bare name as the package's module of the same file."""

    def __init__(self, full_name):
        self.full_name = full_name

    def create_module(self, spec):
        return importlib.import_module(self.full_name)

    def exec_module(self, module):
        pass  # already executed under its package name


class _SpaceFolderFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if "." in name or path is not None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name)
        package = _package_name(spec.origin) if spec is not None else None
        if package is None:
            return None
        return importlib.machinery.ModuleSpec(name, _PackageModule(f"{package}.{name}"), origin=spec.origin)


_finder = _SpaceFolderFinder()


def share_modules(package, paths):
    """Register the folder(s) of `package`; adopt its files already loaded under bare names."""
    for folder in paths:
        _folders[Path(folder).resolve()] = package
    for name, module in list(sys.modules.items()):
        if "." not in name and _package_name(getattr(module, "__file__", None)) == package:
            sys.modules.setdefault(f"{package}.{name}", module)
            setattr(sys.modules[package], name, sys.modules[f"{package}.{name}"])
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds the space packages in the checkout this `common` was imported from."""

    def find_spec(self, name, path=None, target=None):
        folder = SPACE_PACKAGES.get(name)
        if folder is None or not (ROOT / folder / "__init__.py").is_file():
            return None
        return importlib.util.spec_from_file_location(name, ROOT / folder / "__init__.py",
                                                      submodule_search_locations=[str(ROOT / folder)])


def find_space_packages():
    """Let `import space201` / `import darts_space` work from an uninstalled checkout."""
    if not any(isinstance(finder, _CheckoutFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _CheckoutFinder())
