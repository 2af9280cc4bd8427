"""Persistence: the only package that imports lmdb."""
