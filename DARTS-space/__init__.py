"""A search space folder, installed as a package (see common/space_folders.py): its files are
one module each whether imported by package name or, from this folder, by bare name."""
from common.space_folders import share_modules

share_modules(__name__, __path__)
