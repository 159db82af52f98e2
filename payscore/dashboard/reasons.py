"""Why a payment scored as it did, on the review queue and the customer page.

The consumer stores each decision's top reasons as one readable line
(``scored_transactions.explanation``, ``core/explain.py``); this module only shows them: a
wide column in the tables and, for the payment an analyst has picked in the review queue,
its reasons one per line. A row decided before explanations existed (or with them turned
off) shows nothing.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

#: The column's look in ``views.table`` (``COLUMN_FORMATS``).
COLUMN = st.column_config.TextColumn(
    "explanation",
    width="large",
    help="The features that raised the score most, largest first (docs/model.md#explanations)",
)


def show_picked(frame: pd.DataFrame, transaction_id: str | None) -> None:
    """The picked payment's reasons (the oldest payment's when none is picked), one a line."""
    if frame.empty or "explanation" not in frame:
        return
    rows = frame[frame["transaction_id"] == transaction_id] if transaction_id else frame.head(0)
    row = (rows if not rows.empty else frame).iloc[0]
    text = row["explanation"]
    if not isinstance(text, str) or not text:
        st.caption(f"No explanation stored for {row['transaction_id']}.")
        return
    lines = "\n".join(f"- {reason}" for reason in text.split("; "))
    st.markdown(f"**Why {row['transaction_id']} scored {row['score']:.4f}:**\n{lines}")
