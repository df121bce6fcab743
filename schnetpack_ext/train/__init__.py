"""Training helpers for SchNetPack / Lightning."""

from .checkpoint import TrustedCheckpointIO

__all__ = ["TrustedCheckpointIO"]
