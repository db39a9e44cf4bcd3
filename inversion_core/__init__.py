"""inversion_core: diffusion inversion in ComfyUI's sigma space, pure torch (no ComfyUI import).

Entry points: ``trajectory.invert`` (any ``StepSolver`` over a sampler's sigmas) and ``trajectory.sample``.
"""
from . import metrics
from .adaptive import AdaptiveInversion
from .analytic import GaussianMixture
from .ddim import DDIMInversion
from .easyinv import EASYINV_PRESETS, EasyInv
from .errors import InversionError, NonFiniteError
from .monitor import Monitor
from .problem import Denoiser, StepProblem, StepSolution, StepSolver
from .regularizers import NoiseRegularizer
from .renoise import ReNoise
from .rnri import RNRI
from .steps import STEP_KINDS, make_steps
from .trajectory import Inversion, invert, sample

__all__ = [
    "GaussianMixture", "DDIMInversion", "AdaptiveInversion", "EasyInv", "EASYINV_PRESETS", "NoiseRegularizer",
    "ReNoise", "RNRI", "metrics", "InversionError", "NonFiniteError", "Monitor", "Denoiser",
    "StepProblem", "StepSolution", "StepSolver", "STEP_KINDS", "make_steps", "Inversion", "invert", "sample",
]
