"""One module per objective: its loss, data kind, head and config section."""
