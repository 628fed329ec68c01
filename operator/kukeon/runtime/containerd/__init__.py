"""containerd over its gRPC API: namespaces, images, containers, tasks, events."""
