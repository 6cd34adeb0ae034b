"""Cython kernels of mediasrv. Import nothing from mediasrv (see ARCHITECTURE.md)."""
