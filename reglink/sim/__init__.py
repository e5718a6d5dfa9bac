"""Synthetic registry-event generator behind ``reglink simulate``.

Modules: :mod:`ids` (resident IDs), :mod:`geo` (places, hotels, employers), :mod:`names`
(Chinese names, romanisation, name noise), :mod:`population` (persons, namesakes, relatives),
:mod:`events` (stays, moves, registrations, watchlist), :mod:`noise` (per-source record noise),
:mod:`truth` (ground-truth alerts per docs/contract.md §2).
"""
