"""An app module that fails while being imported, for the CLI's one-line errors."""

raise RuntimeError("the settings file is missing")
