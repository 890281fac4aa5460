"""Command-line configuration: argument groups and flag types shared by the scripts, and the config.json schema."""
