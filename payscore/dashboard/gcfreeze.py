"""Keeping full garbage collections of the dashboard's server cheap.

Streamlit runs a full garbage collection (``gc.collect(2)``) after every script run while
holding the GIL, so the message that tells the browser the run is over waits for it. A full
collection walks every tracked object, and pandas, Altair (its Vega-Lite schema is tens of
thousands of dicts), SQLAlchemy and Streamlit itself make that about 0.26 s on this 2-core
machine under load: a quarter of a second added to every click. ``gc.freeze()`` moves the
objects alive at that moment (the imported modules) to a permanent generation that
collections skip; whatever a run allocates is still collected as before.

Frozen, the forced collection still grew with what the server made after its imports
(modules imported on a tab's first use, the sessions' state): a customer lookup took 0.29-0.34
s instead of 0.14-0.22 s in a browser session after a first one. So ``payscore dashboard`` also
turns it off (``--runner.postScriptGC false``); Python's own collector still runs, and the
freeze keeps its full collections cheap too.
"""

from __future__ import annotations

import gc

_frozen = False


def once() -> None:
    """Collect, then freeze everything alive; only the first call in a process does it."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True
