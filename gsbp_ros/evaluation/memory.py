"""Wall time and peak memory of one phase of a run: ``with Measure(device) as m: ...``.

On a CUDA device the peak is the allocator's (``torch.cuda.max_memory_allocated`` above the
level at entry). On a CPU it is the process's resident set size, sampled every ``interval``
seconds from ``/proc/self/statm`` by a background thread, above the level at entry: memory
freed and reused inside the phase counts once, short spikes between samples can be missed.
Where ``/proc`` does not exist the peak is None.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import torch

_STATM = Path("/proc/self/statm")


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``), so that the next
    phase starts from a resident size that reflects what is still in use. (Tensors are freed
    by reference counting as soon as they are dropped; no garbage collection needed.)"""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def resident_bytes() -> int | None:
    """Current resident set size of this process, or None where /proc is missing."""
    try:
        return int(_STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class Measure:
    """Context manager: ``seconds`` (wall), ``cpu_seconds`` (this process, all threads) and
    ``peak_bytes`` (None if unknown) after the block. CPU time is the steadier number on a
    machine shared with other jobs."""

    def __init__(self, device: str | torch.device = "cpu", *, interval: float = 0.002) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.peak_bytes: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._base = 0
        self._peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            now = resident_bytes()
            if now is not None:
                self._peak = max(self._peak, now)

    def __enter__(self) -> Measure:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            release_free_memory()
            base = resident_bytes()
            if base is not None:
                self._base = self._peak = base
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        return self

    def elapsed(self) -> tuple[float, float]:
        """(wall, CPU) seconds since entry, while inside the block."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - self._t0, time.process_time() - self._c0

    def __exit__(self, *exc: object) -> None:
        self.seconds, self.cpu_seconds = self.elapsed()
        if self.device.type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            now = resident_bytes()
            self._peak = max(self._peak, now or 0)
            self.peak_bytes = self._peak - self._base
