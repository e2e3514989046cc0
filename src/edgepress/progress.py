"""Live progress for the phases a person waits on (exporting, lowering to ExecuTorch, measuring,
timing): a spinner with the elapsed time while it runs, one line with its wall time when done.

On a terminal the live line is redrawn in place; piped (CI logs), only the closing line is
printed, so logs stay short. Everything goes to stderr: stdout keeps the tables.

Example:
    >>> with phase("counting", enabled=False):
    ...     n = sum(range(10))
    >>> n
    45
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


@contextlib.contextmanager
def phase(text: str, *, enabled: bool = True) -> Iterator[None]:
    """Show ``text`` with a spinner and the elapsed time while the block runs; then print
    ``text: N.N s``. When the block raises nothing more is printed: the error says why.
    """
    if not enabled:
        yield
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    t0 = time.perf_counter()
    if console.is_terminal:
        with Progress(SpinnerColumn(), TextColumn(text), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            bar.add_task(text, total=None)
            yield
    else:
        yield
    console.print(f"  {text}: {time.perf_counter() - t0:.1f} s", highlight=False, soft_wrap=True)
