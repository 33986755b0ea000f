"""Where verdicts go: output writers (JSON lines, JSON, CSV, a rich table) and quarantine."""
