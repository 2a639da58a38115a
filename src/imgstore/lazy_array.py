"""The numpy face of the frame index's 1-D arrays that are not held whole.

:class:`~imgstore.lazy_index.RangeArray` (an index cache's array, read by page) and
:class:`~imgstore.run_array.RunArray` (frame numbers as runs) answer the few things a lookup
asks (an item, a slice, a sorted search) themselves; anything else numpy is asked to do with
them gets the whole array, made by the subclass's :meth:`LazyArray.load`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["LazyArray", "concrete"]


class LazyArray:
    """Base of a read-only 1-D array that makes its values only when asked."""

    __array_priority__ = 1000
    ndim = 1
    dtype: np.dtype
    _length: int

    @property
    def shape(self) -> tuple[int]:
        return (self._length,)

    @property
    def size(self) -> int:
        return self._length

    def __len__(self) -> int:
        return self._length

    def load(self) -> np.ndarray:
        """The whole array (read-only)."""
        raise NotImplementedError

    def _search(self, v: Any, side: str) -> Any | None:
        """``np.searchsorted(self, v, side)`` without the whole array, or None if it cannot."""
        return None

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        full = self.load()
        return full if dtype is None else full.astype(dtype, copy=False)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if func is np.searchsorted and args and args[0] is self and kwargs.get("sorter") is None:
            found = self._search(args[1] if len(args) > 1 else kwargs["v"],
                                 args[2] if len(args) > 2 else kwargs.get("side", "left"))
            if found is not None:
                return found
        return func(*concrete(args), **concrete(kwargs))

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return getattr(ufunc, method)(*concrete(inputs), **concrete(kwargs))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.load(), name)  # min(), tolist(), copy()...: the whole array


def concrete(value: Any) -> Any:
    """``value`` with every :class:`LazyArray` in it (in lists, tuples, dicts) made whole."""
    if isinstance(value, LazyArray):
        return value.load()
    if isinstance(value, (list, tuple)):
        return type(value)(concrete(v) for v in value)
    if isinstance(value, dict):
        return {k: concrete(v) for k, v in value.items()}
    return value
