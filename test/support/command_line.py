"""Command lines written the way a user types them.

A test that runs ``topreward bag ...`` reads best as one line of flags, not as a
column of quoted words. ``command_line`` takes that line as a template: it is split
on whitespace, and each ``{}`` is replaced, in order, by ``str()`` of the next value.
Values are never split, so paths, instructions with spaces and numbers pass through
as single arguments.
"""

from __future__ import annotations

from typing import Any


def command_line(template: str, *values: Any) -> list[str]:
    """The argv for ``template`` with each ``{}`` filled by the next of ``values``."""
    words = template.split()
    holes = sum(word == "{}" for word in words)
    if holes != len(values):
        raise ValueError(f"{template!r} has {holes} '{{}}' but {len(values)} values were given")
    filling = iter(values)
    return [str(next(filling)) if word == "{}" else word for word in words]
