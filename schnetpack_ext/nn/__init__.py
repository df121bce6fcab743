"""Building blocks of the QDF model: grids and orbital sets."""

from .grids import *  # noqa: F401,F403
from .orbitals import *  # noqa: F401,F403
