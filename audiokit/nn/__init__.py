"""Shared neural building blocks (FSMN, complex layers, gated conv units)."""
