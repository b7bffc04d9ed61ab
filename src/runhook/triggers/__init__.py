"""One module per trigger kind: its configuration schema and a checker built
once; crossings and filters. Pure; imports core only."""
