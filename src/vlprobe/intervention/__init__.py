"""Causal probes by concept erasure (amnesic probing, Elazar et al. 2021).

An intervention is an extraction setting: an eraser is fitted on the train split of the plain
cache at one layer (``erasers``, ``fit``), then the model runs again with the eraser applied to
the concept's units at that layer by forward hooks (``hooks``), so the layers above compute on
erased states; the result is an ordinary cache (``settings``: its key and provenance).
"""
