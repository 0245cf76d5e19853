"""What is searched: the spec and its overrides, the hypermodel/run_trial and data loaders, the
oracles (with the Bayesian oracle's Gaussian process), scoring, results, start warnings and the
Pima examples. Used by the chief, the workers and the CLI alike."""
