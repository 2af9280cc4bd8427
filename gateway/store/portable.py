"""``Portable``: update and transaction functions that travel to the writer process.

With ``[store] writer = "process"`` (``writer_process.py``) each group is pickled, update
functions included. pickle's generic path for a ``__slots__`` object (``copyreg``'s
``__reduce_ex__``, which looks up the slot names and builds a state dict every time) cost
~10 us per object, more than the rest of a message's ops together; a ``Portable`` pickles
as its class and one tuple of its slot values (one C ``attrgetter`` call).
"""

from __future__ import annotations

import operator
from typing import Any, ClassVar

__all__ = ["Portable"]


def _restore(cls: type[Portable], state: tuple[Any, ...]) -> Portable:
    obj = cls.__new__(cls)
    names: tuple[str, ...] = tuple(cls.__slots__)
    for name, value in zip(names, state, strict=True):
        object.__setattr__(obj, name, value)
    return obj


class Portable:
    """Base of a ``__slots__`` class that pickles as ``(class, slot values)``.

    Every slot must be set (``__init__`` sets them all) and hold picklable values; the
    subclass declares ``__slots__`` as usual (a tuple or list of names).
    """

    __slots__ = ()
    _state: ClassVar[operator.attrgetter[Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        slots = cls.__dict__.get("__slots__", ())
        if isinstance(slots, str) or not slots:
            raise TypeError(f"{cls.__name__} needs a tuple of __slots__ to be Portable")
        # A one-name attrgetter returns the value itself, not a 1-tuple.
        cls._state = operator.attrgetter(*slots, *(("__class__",) if len(slots) == 1 else ()))

    def __reduce__(self) -> tuple[Any, tuple[type[Portable], tuple[Any, ...]]]:
        state = self._state(self)
        if len(type(self).__slots__) == 1:
            state = state[:1]
        return _restore, (type(self), state)
