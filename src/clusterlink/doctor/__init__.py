"""The doctor: floaters (probe servers) and `kosmosctl dr` / `kosmosctl analysis`."""
