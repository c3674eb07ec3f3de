"""Applications built on the library: the ``hcl`` command line, the demo and its report."""
