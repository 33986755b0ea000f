"""The demo signature library shipped with meshscan (data only; installed as scanner._shipped)."""
