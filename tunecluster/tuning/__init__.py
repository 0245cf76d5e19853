"""What is searched: the spec, the hypermodel and data loaders, the oracle factory, the worker's
tuner, results and the best-model export."""
