"""Control-plane loops: network-manager, member controller, elector."""
