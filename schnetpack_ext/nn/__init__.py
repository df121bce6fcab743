"""Building blocks of the QDF model: grids, orbital sets and the normalised basis."""

from .basis import *  # noqa: F401,F403
from .grids import *  # noqa: F401,F403
from .orbitals import *  # noqa: F401,F403
