"""Small shared helpers: atomic file writes, metrics files, seeding."""
