"""Progress reporting shared by every job: a callback ``(done, total, message)``.

The CLI passes a tqdm adapter, the dashboard an ``st.progress`` adapter, tests a list appender.
"""

from __future__ import annotations

from collections.abc import Callable

from tqdm import tqdm

Progress = Callable[[int, int, str], None]


def silent(_done: int, _total: int, _message: str) -> None:
    """The default callback: report nothing."""


class TqdmProgress:
    """A progress callback that drives one tqdm bar (resized when the total changes)."""

    def __init__(self, desc: str = "") -> None:
        self.bar = tqdm(total=0, desc=desc, unit="it", dynamic_ncols=True)

    def __call__(self, done: int, total: int, message: str) -> None:
        if self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.set_postfix_str(message, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
