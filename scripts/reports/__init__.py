"""What scripts/aggregate.py, plot_search.py, plot_genotype.py and the table runner read and
draw: the runs' results.json files, the Markdown tables, the edge heatmaps and the cell diagrams."""
