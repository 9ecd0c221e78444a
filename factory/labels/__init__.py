"""QR labels: templates, layout, PDF rendering and printing."""
