"""Atelier's REST gateway: routes derived from the protos' `google.api.http` annotations."""
