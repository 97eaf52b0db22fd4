"""The bottom layer every package stands on: atomic writes, hashing, the strict typed config
loader, CLI helpers, pixel conversions and media listing.

It imports only the standard library, numpy and OpenCV (PyYAML lazily, inside the functions that
read YAML), and nothing from the packages above it; ``make test`` checks the layers
(import-linter, ``[tool.importlinter]`` in pyproject.toml).
"""
