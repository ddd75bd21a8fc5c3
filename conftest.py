# Shared fixtures and the rules for integration tests live in mooc/testing/.
pytest_plugins = ["mooc.testing.pytest_plugin", "mooc.testing.clock", "mooc.testing.fixtures"]
