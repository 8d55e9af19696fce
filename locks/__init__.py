"""Pre-resolved uv.lock files of the rendered projects, one per dependency variant."""
