"""Measuring general and domain ability."""
