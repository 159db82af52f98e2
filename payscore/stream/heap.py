"""Keeping the collector off the long-lived feature state and model (see docs/pipeline.md)."""

from __future__ import annotations

import gc
from typing import Any


def settle_heap() -> None:
    """Collect once, then exempt everything alive now from later collections.

    The feature state and the model are long-lived. Without this, every full collection walks
    all of them: pauses of 150-200 ms were measured at 1,000 payments/s, and every payment in
    flight waits through them. Unfreezing first lets garbage from an earlier freeze go.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    # Once more, over nothing: CPython defers the next full collection until a quarter as many
    # objects as the last one kept have been added, and that count would still include what
    # was just frozen (a first pause of 50 ms some 20 s later). Now it counts from zero.
    gc.collect()


def freeze_after_full_collection(phase: str, info: dict[str, Any]) -> None:
    """A ``gc.callbacks`` hook: after a full collection, freeze what survived it.

    State created since the last rebuild (customers and terminals first seen since) is walked
    by every full collection until it is frozen too: 35-60 ms pauses every 10-20 s in the
    benchmark. Right after a full collection everything tracked is reachable, so freezing it
    then keeps no garbage; ``SETTLE_S`` bounds what becomes garbage later while frozen.
    """
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()
