"""The methods the showcase compares: one pack node each, at its documented defaults (ReNoise: the official
SDXL-Turbo settings except the regulariser, off by default since the edit benchmark), all over the same schedule and
sampled back with Inverted Sampler."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Method:
    key: str             # file-name friendly
    label: str           # column / legend name
    node: str            # pack node id
    params: dict = field(default_factory=dict)
    calls_per_step: float = 1.0   # rough, for the ETA only
    color: tuple = (0, 0, 0)


METHODS = (
    Method("ddim", "DDIM", "ExactInvDDIMInvert", {"convention": "target"}, 1, (214, 39, 40)),
    Method("renoise", "ReNoise", "ExactInvReNoiseInvert",
           {"iterations": 9, "average": True, "average_start": 8, "average_end": 10, "first_step": "first",
            "regularize": False, "lambda_pair": 20.0, "lambda_kl": 0.065, "seed": 0}, 10, (255, 127, 14)),
    Method("easyinv", "EasyInv", "ExactInvEasyInvInvert",
           {"preset": "sd1", "eta": 0.5, "start": 0.05, "length": 0.2, "order": "before"}, 1, (148, 103, 189)),
    Method("rnri", "RNRI", "ExactInvRNRIInvert",
           {"variant": "newton", "iterations": 2, "prior_weight": 0.1}, 8, (31, 119, 180)),
    Method("exact", "Exact (adaptive)", "ExactInvExactInvert",
           {"tolerance": 1e-3, "max_calls": 30, "memory": 3, "fallback": True}, 6, (44, 160, 44)),
)
