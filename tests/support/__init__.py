"""Helpers shared by the e2e tests, the browser tests and the benchmarks (standard library
only, so that the benchmarks can import them without the dev dependencies)."""
