"""``meshscan watch``: the upload-folder daemon (observer -> settle -> scan -> actions, journalled in SQLite)."""
