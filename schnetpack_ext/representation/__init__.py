"""SchNetPack representations of ase-qdf."""

from .qdf import *  # noqa: F401,F403
