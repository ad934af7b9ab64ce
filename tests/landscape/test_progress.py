"""A requested interrupt stops the next progress update, even if the first KeyboardInterrupt
was swallowed (Python drops exceptions raised inside finalizers and weakref callbacks)."""

from __future__ import annotations

import pytest

from landscape.progress import progress, request_interrupt


def test_a_requested_interrupt_raises_at_the_next_update():
    try:
        with progress(total=3, desc="t") as bar:
            bar.update(1)
            request_interrupt()
            with pytest.raises(KeyboardInterrupt):
                bar.update(1)
    finally:
        request_interrupt(False)
    with progress(total=2, desc="t") as bar:  # cleared: loops run again
        bar.update(2)
