"""The gateway test suite (a package, so test modules can share `tests.api_setup`)."""
