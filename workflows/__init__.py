"""Example ML pipelines written with the CDAO SDK.

A package so that ``pyflyte package --pkgs workflows`` and ``pyflyte register workflows`` find every
module; see README.md for how to add a pipeline.
"""
