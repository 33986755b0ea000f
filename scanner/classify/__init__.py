"""The component classifier: a calibrated model for designs that are in no signature library.

- :mod:`scanner.classify.shape` - interpretable shape features (versioned);
- :mod:`scanner.classify.features` - the classifier's row: shape features + descriptor;
- :mod:`scanner.classify.model` - fit, predict, safe persistence (refit at load, no pickle);
- :mod:`scanner.classify.explain` - scores and the features behind them, in words;
- :mod:`scanner.classify.bodies` - which bodies of an upload are scored alone (per-body scoring);
- :mod:`scanner.classify.train` - ``meshscan train``: grouped cross-validation and report;
- :mod:`scanner.classify.rebase` - ``meshscan train --base``: a base model's rows plus one's own;
- :mod:`scanner.classify.evaluate` - ``meshscan evaluate``: figures with Wilson intervals,
  threshold table, operating points.
"""

from __future__ import annotations
