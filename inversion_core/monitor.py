"""Host hooks: progress per model call, interrupt checks inside every loop, per-step previews.

The core never imports a host. A host (the ComfyUI nodes) passes a Monitor whose callables tick its progress
bar and raise its own interrupt exception; the core calls ``check()`` in every iteration loop, including loops
that evaluate no model (the ReNoise regularisers), so a cancel is honoured within one model call.
"""
from __future__ import annotations

from typing import Callable, Optional


class Monitor:
    def __init__(
        self,
        on_model_call: Optional[Callable[[], None]] = None,
        check_interrupt: Optional[Callable[[], None]] = None,
        on_step: Optional[Callable[[dict], None]] = None,
    ):
        self._on_model_call = on_model_call
        self._check_interrupt = check_interrupt
        self._on_step = on_step

    def check(self) -> None:
        if self._check_interrupt is not None:
            self._check_interrupt()

    def model_call(self) -> None:
        if self._on_model_call is not None:
            self._on_model_call()

    def step(self, info: dict) -> None:
        if self._on_step is not None:
            self._on_step(info)


SILENT = Monitor()
