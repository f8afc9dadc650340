"""Hydra configs of migalab, installed as the package ``migalab.conf`` (see setup.py)."""
