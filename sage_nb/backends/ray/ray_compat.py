"""Ray's private API, in this one module, each use with a public fallback.

The Ray backend uses one private method of Ray: ``ObjectRef._on_completed(callback)``. Once
the object is ready it runs ``callback(value)`` on Ray's callback thread, where ``value`` is
the object's value or, if the task failed, the exception itself (``RayTaskError``,
``ActorDiedError``, ...), which is passed, not raised. It is what Ray builds its public
``ObjectRef.future()`` on, without the ``Future`` and its lock in between: a service call's
answer takes it once per batch, a sync call to an idle actor on a timeout.

``on_completed(ref, callback)`` uses it where the installed ``ObjectRef`` has it (Ray's source
has it, and builds ``future()`` on it, from the 1.x series on; the tests run on 2.60). Where it
does not (a Ray that renamed or dropped it), or with ``use_private_api`` set to False, it
takes the public route, ``ref.future().add_done_callback``, and passes the callback the same
thing: the value, or the exception. Through ``future()`` a ``RayTaskError`` arrives as Ray's
``as_instanceof_cause()`` of it, as ``ray.get`` raises it: still a ``RayTaskError``, with the
same ``cause`` and text, and also an instance of the cause's class.

Either way the callback may run at once on the calling thread if the object is already ready,
and the caller keeps ``ref`` referenced until the callback ran (the Ray backend passes it
along with the callback).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from functools import partial
from typing import Any

__all__ = ["on_completed", "use_private_api"]

#: False takes the public route even where Ray has the private method (the tests of the
#: fallback set it).
use_private_api = True


def on_completed(ref: Any, callback: Callable[[Any], None]) -> None:
    """Run ``callback(value)`` once ``ref`` is ready; ``value`` is the exception if the task
    failed (see the module docstring)."""
    if use_private_api:
        try:
            register = ref._on_completed
        except AttributeError:
            pass
        else:
            register(callback)
            return
    ref.future().add_done_callback(partial(_pass_outcome, callback))


def _pass_outcome(callback: Callable[[Any], None], future: Future[Any]) -> None:
    """``callback`` with what ``_on_completed`` would pass: the value, or the exception."""
    value: Any
    if future.cancelled():  # nothing cancels these futures; still, never leave a caller waiting
        value = CancelledError()
    else:
        failure = future.exception()
        value = failure if failure is not None else future.result()
    callback(value)
