"""Root conftest: registers the shared fixture plugins of tests/fixtures."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.etcd",
    "tests.fixtures.containerd",
    "tests.fixtures.kukeond",
    "tests.fixtures.soak",
]
