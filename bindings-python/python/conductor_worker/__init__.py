"""conductor-worker: a worker runtime for Conductor with a Rust core."""

from conductor_worker._native import core_version

__all__ = ["core_version"]
