"""The command-line interface: one module per subcommand; each parses, calls the library, prints."""
