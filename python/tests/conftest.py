"""pytest configuration for python/tests."""


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped with the reason elsewhere); run by python/device_check.py")
