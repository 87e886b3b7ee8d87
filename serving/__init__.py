"""Standalone model server: serves one registered model version behind an alias.

Run it as ``python -m serving``; see ``serving/README.md`` for the contract. The
package imports nothing from ``core`` so that the image only needs ``serving/``.
"""
