"""clusterlink.agent"""
