"""Unpickling files without running code from them: an allow-list of the globals they may name.

A pickle can name any importable callable and have it called while it loads (a crafted
`__reduce__`), so a dataset batch or a benchmark file from the internet could run code.
The files this project reads hold only plain data: dicts, lists, numbers, strings and bytes,
numpy arrays and scalars (CIFAR, CIFAR-100 and ImageNet16 batches; the benchmark files, which
torch.save wrote, add OrderedDicts and torch's tensor rebuild functions). `Unpickler` admits
exactly those globals; any other refuses the file with one line, before it is called. It is
a subclass of the C unpickler, so it loads as fast as `pickle.load`, and it serves
`torch.load(..., pickle_module=...)` as well (`TORCH_MODULE`), where weights_only's pure-Python
unpickler would take minutes over a 2 GB benchmark file.
"""
import pickle
import types

from common.errors import UserError

_NUMPY = {(core, name) for core in ("numpy.core.multiarray", "numpy._core.multiarray")
          for name in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype")}
_PLAIN = {("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"),
          ("builtins", "complex"), ("builtins", "object"), ("copyreg", "_reconstructor"), ("_codecs", "encode")}
_PYTHON2_NAMES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # protocol-2 pickles name these
_TORCH = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
          ("torch", "Size"), ("torch", "device")}
ALLOWED = frozenset(_NUMPY | _PLAIN | _TORCH)


class UnsafeGlobal(pickle.UnpicklingError):
    """A pickle named a global outside the allow-list."""


def _allowed(module, name):
    module = _PYTHON2_NAMES.get(module, module)
    return (module, name) in ALLOWED or (module == "numpy.dtypes" and name.endswith("DType"))


class Unpickler(pickle.Unpickler):
    """pickle.Unpickler that finds only the allowed globals (see the module doc)."""

    def find_class(self, module, name):
        if not _allowed(module, name):
            raise UnsafeGlobal(f"{module}.{name}")
        return super().find_class(module, name)


def load(file, **kwargs):
    return Unpickler(file, **kwargs).load()


# what torch.load(..., pickle_module=TORCH_MODULE, weights_only=False) needs of a pickle module
TORCH_MODULE = types.SimpleNamespace(__name__="common.data.safe_pickle", Unpickler=Unpickler, load=load,
                                     UnpicklingError=pickle.UnpicklingError)


def refusal(path, what, err):
    """The one-line UserError of a file whose unpickling named a global outside the allow-list."""
    return UserError(f"{what} file {path} asks to load {err} while unpickling, which plain data never needs "
                     "(it may run code): refused; use the official file")
