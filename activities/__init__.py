"""Activities: the only code that touches the database, providers and the outside clock."""
