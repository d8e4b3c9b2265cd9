"""The Kubernetes API client: which server (`target`), one connection to it and its errors
(`api`). A bottom package: it knows HTTP and kubeconfigs, nothing of the store or our kinds.

Light on purpose (kosmosctl imports the package on every start): the client library loads
only with `clusterlink.kubeclient.api`."""
