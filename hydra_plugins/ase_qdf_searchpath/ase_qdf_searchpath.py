"""Hydra search-path plugin: lets ``spktrain`` find the configs of ``schnetpack_ext``.

Hydra discovers plugins in the ``hydra_plugins`` namespace package. This one appends
``pkg://schnetpack_ext.configs`` to the config search path of SchNetPack's apps (their
primary configs live in ``pkg://schnetpack.configs``), so that
``spktrain experiment=schnet_qm9_under14`` works with no ``--config-dir`` flag. If the
app cannot be recognised (no SchNetPack config path found) it appends nothing.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

PROVIDER = "ase-qdf"
CONFIG_PATH = "pkg://schnetpack_ext.configs"


class AseQdfSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        paths = [element.path for element in search_path.get_path()]
        if CONFIG_PATH in paths:
            return
        if any(p.startswith(("pkg://schnetpack.configs", "pkg://schnetpack/configs")) for p in paths):
            search_path.append(provider=PROVIDER, path=CONFIG_PATH)
