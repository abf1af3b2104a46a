"""Experiments: one run of traffic across a testbed, one matrix cell, the matrix, the kernel
self-check, and where their results go."""
