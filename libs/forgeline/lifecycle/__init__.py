"""Data lifecycle: per-project retention of the warehouse, blobs and exports; erasure by person."""
