"""Test tooling shared by the Python test suites: servers to test against and an HTTP client."""
