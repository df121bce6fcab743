"""Hydra configs of schnetpack_ext (found by spktrain through a search-path plugin)."""
