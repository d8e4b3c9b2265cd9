"""clusterlink.planner"""
