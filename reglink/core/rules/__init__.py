"""The alert rules (docs/contract.md §2).

A rule is an :class:`~reglink.core.rules.base.AlertRule` in a module of its own;
:data:`reglink.core.rules.registry.RULES` lists the rules the pipeline runs. Pure helpers:
:mod:`.stay`, :mod:`.watchlist`, :mod:`.clock`, :mod:`.watermark`, :mod:`.merge`; reviewers'
decisions: :mod:`.decisions`. Importing this package loads no rule (the registry does).
"""
