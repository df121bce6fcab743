"""Hydra search-path plugin of ase-qdf (see ase_qdf_searchpath.py)."""
