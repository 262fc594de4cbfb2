"""The progress bar of long bag runs (scoring and replay), on a terminal only.

A bar on a pipe or in a log file is noise, so it is shown only when stderr is
a terminal and the user did not ask for quiet output; otherwise a no-op with
the same two methods stands in.
"""

from __future__ import annotations

import sys
from typing import Any


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int | None, enabled: bool, desc: str, unit: str = "msg") -> Any:
    """A tqdm bar counting messages (or other ``unit``s), or a silent stand-in."""
    if not enabled or not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, desc=desc, dynamic_ncols=True)
