"""Shared neural building blocks (FSMN, complex layers, gated units, linear state-space layers)."""
