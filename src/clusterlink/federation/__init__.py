"""The federation's use cases: install, join, unjoin, uninstall (`commands`), behind one
interface (`base.Federation`) with a lab (`lab`) and a Kubernetes (`kube`) implementation;
which control plane a command means (`control`); a member's life in the store and waiting
until connected (`membership`)."""
