"""The Typer command line: a thin shell over the library."""
