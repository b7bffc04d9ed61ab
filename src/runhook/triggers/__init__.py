"""One module per trigger kind: its configuration schema and a checker built once."""
