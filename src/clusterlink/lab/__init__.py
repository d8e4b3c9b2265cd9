"""The lab: emulated Kubernetes clusters made of network namespaces on one host."""
