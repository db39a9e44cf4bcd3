"""Errors the core raises; hosts translate them into messages that name their node and input."""


class InversionError(ValueError):
    """Bad input or settings for an inversion."""


class NonFiniteError(FloatingPointError):
    """The model or the solver produced NaN or inf."""

    def __init__(self, message: str, step: int | None = None, sigma: float | None = None):
        super().__init__(message)
        self.step = step
        self.sigma = sigma
