"""Hypothesis strategies shared by the vault tests."""

from __future__ import annotations

from hypothesis import strategies as st

#: what agent state and WAL payloads hold: msgpack's plain values, nested
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)
