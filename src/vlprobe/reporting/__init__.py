"""Figures (PNG, matplotlib without a display) and console/file tables of results.

- :mod:`.figures`: accuracy by layer, layer x head heatmaps, text vs image attention.
- :mod:`.table`: aligned plain-text tables and ``results.json`` / ``results.csv``.
"""
