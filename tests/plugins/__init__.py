"""Tests of plugins/ (a package so that its fixtures can be package-scoped; see conftest)."""
