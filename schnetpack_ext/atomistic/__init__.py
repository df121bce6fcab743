"""Output modules of ase-qdf."""

from .hk import *  # noqa: F401,F403
