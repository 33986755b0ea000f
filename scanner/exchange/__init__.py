"""Sharing signature libraries between organisations: signed bundles, subscriptions, and
signals shaped for Meta's python-threatexchange / Hasher-Matcher-Actioner (HMA).

- :mod:`scanner.exchange.keys`: Ed25519 publisher keys and their fingerprints;
- :mod:`scanner.exchange.bundle`: one signed, versioned file carrying a library's records
  (descriptors and hashes, never geometry), verified before any of it is parsed;
- :mod:`scanner.exchange.subscribe`: ``signatures update`` - fetch, verify, merge a publisher's
  bank into a library and swap it in atomically;
- :mod:`scanner.exchange.signals`: meshscan's signal types as strings (HMA's
  ``signal_type`` + ``signal_value``), with no dependency;
- :mod:`scanner.exchange.tx`: the python-threatexchange extension (``TX_MANIFEST``).
"""
