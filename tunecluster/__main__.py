"""Allows `python -m tunecluster`."""

from tunecluster.cli import main

main()
