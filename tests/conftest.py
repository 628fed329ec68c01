"""Root conftest: registers the shared fixture plugins of tests/fixtures, and the
hypothesis profile every property test runs under."""

from hypothesis import settings

pytest_plugins = [
    "tests.fixtures.hostleaks",
    "tests.fixtures.services",
    "tests.fixtures.etcd",
    "tests.fixtures.containerd",
    "tests.fixtures.kukeond",
    "tests.fixtures.soak",
]

# No per-example deadline: hypothesis's default (200 ms) is a timing assertion, which a
# loaded 2-core CI machine fails now and then (test_no_collisions_in_a_fleet did, once,
# at load 12); a property's examples are judged by what they assert, never by their time.
settings.register_profile("kukeon", deadline=None)
settings.load_profile("kukeon")
