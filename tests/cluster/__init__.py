"""A one-node SLURM test cluster, a toy workflow and the harness that runs workflows on it."""
