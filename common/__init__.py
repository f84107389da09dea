"""The shared library of both search spaces (docs/architecture.md)."""
from common.space_folders import find_space_packages

find_space_packages()  # space201 / darts_space from an uninstalled checkout (common/space_folders.py)
