"""The `atelier` command line: the stack commands (`up`, `down`, `status`) and one sub-app per service."""
