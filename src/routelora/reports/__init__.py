"""What people read: markdown tables of a comparison (:mod:`~routelora.reports.tables`) and routing heatmaps
(:mod:`~routelora.reports.plots`)."""
