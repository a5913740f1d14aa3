"""Declared structure of an operator: general, symmetric, or symmetric positive definite."""

from __future__ import annotations

import enum


class Structure(enum.Enum):
    """What the user declares about A(θ) for every θ.

    ``SYMMETRIC`` lets ``rmatvec`` default to ``matvec``; ``SPD`` additionally allows CG.
    """

    GENERAL = "general"
    SYMMETRIC = "symmetric"
    SPD = "spd"

    @classmethod
    def coerce(cls, value: str | Structure) -> Structure:
        """Accept a :class:`Structure` or its name (``"general"``, ``"symmetric"``, ``"spd"``)."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            names = ", ".join(repr(s.value) for s in cls)
            raise ValueError(f"structure must be one of {names}, got {value!r}") from None

    @property
    def is_symmetric(self) -> bool:
        """True for ``SYMMETRIC`` and ``SPD``."""
        return self is not Structure.GENERAL
