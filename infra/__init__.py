"""The imperative shell: database, providers and packaged data."""
