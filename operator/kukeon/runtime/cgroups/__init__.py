"""cgroup drivers: v2 (unified) and v1 (legacy/hybrid), detected at start."""
