"""Fixtures for the gateway tests: real upstream registries on loopback."""

from __future__ import annotations

from parts.registries import distribution, http

__all__ = ["distribution", "http"]
