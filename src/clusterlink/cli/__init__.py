"""clusterlink.cli"""
