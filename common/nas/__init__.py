"""The search: the mixing weights of every edge (Dirichlet, softmax, Gumbel), the mixed op, the
search-space contract and registry, the architecture step, progressive learning, the search
step and task, and what a search records beside its genotype."""
