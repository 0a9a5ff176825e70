"""Lightning callbacks: thin shells that connect training runs to memlab's caches and analyses."""
