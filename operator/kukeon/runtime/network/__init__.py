"""Networking: bridge names, subnets, CNI plugin execution, netns, nftables egress, hosts files."""
