"""Reading a pickle that may hold only dicts, lists, strings and numpy arrays (CIFAR's batches).

``pickle.load`` on a file can run code: whatever class or function the file names is imported
and called. The unpickler here looks up nothing but numpy's array rebuilders, so a crafted or
swapped file stops with a DataError instead.
"""

from __future__ import annotations

import pickle

import numpy as np

from jaxvit.errors import DataError


def _numpy_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct
    # the CIFAR pickles (Python 2, protocol 2) name numpy.core; numpy >= 2 writes numpy._core
    return {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}


class _ArrayUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings and numpy arrays, nothing else: no other class or function
    a pickle names is looked up."""

    def __init__(self, file, path: str, what: str, expected: str):
        super().__init__(file, encoding="latin1")  # Python 2 pickles, as torchvision reads them
        self.path, self.what, self.expected, self.allowed = path, what, expected, _numpy_globals()

    def find_class(self, module: str, name: str):
        if (module, name) in self.allowed:
            return self.allowed[module, name]
        raise DataError(
            f"{self.path} asks to load {module}.{name}, which a {self.what} file never holds; not "
            f"unpickled (it could run code): replace it with the official file ({self.expected})"
        )


def load_arrays(path: str, what: str, expected: str) -> object:
    """What the pickle at ``path`` holds, read with nothing but numpy's array rebuilders.

    ``what`` names the kind of file in the errors ('cifar10'), ``expected`` says what the file
    should be and where it comes from; a damaged file or one that names any other class or
    function raises a DataError naming ``path``.
    """
    with open(path, "rb") as f:
        try:
            return _ArrayUnpickler(f, path, what, expected).load()
        except DataError:
            raise
        except Exception as e:  # truncated or damaged: EOFError, UnpicklingError, ValueError, ...
            raise DataError(f"{path} is not a readable pickle ({type(e).__name__}: {e}); it is truncated "
                            f"or damaged: download it again ({expected})") from e
