"""Thin software-defined assets: resolve partitions -> read via resources -> pure code -> write."""
