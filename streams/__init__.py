"""Thin shell #1: the faust stream worker over the pure core (reglink.core.pipeline)."""
