"""What one scan needs besides the upload, and how another process rebuilds it.

:class:`ScanContext` holds the settings, the signature library (with its matching indexes,
built once) and the component model. It lives in one process. :class:`ContextSpec` is what
crosses a process boundary instead - plain strings (library folder, settings as JSON, model
folder), never objects - so a guarded child or a Dask worker on another machine loads its own
context once (:meth:`ContextSpec.load`, cached per process) and nothing is unpickled.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scanner.config import Settings, settings_from_dict
from scanner.errors import MeshscanError

if TYPE_CHECKING:
    from scanner.classify.model import ComponentModel
    from scanner.library import SignatureLibrary
    from scanner.matching import Matcher


class NoLibraryError(MeshscanError):
    """Scanning was asked for with nothing to match against: an error, never a silent clear."""


@dataclass
class ScanContext:
    settings: Settings = field(default_factory=Settings)
    library: SignatureLibrary | None = None
    model: ComponentModel | None = None
    """The component classifier for files that match no signature (None: matching only)."""

    _matcher: Matcher | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def matcher(self) -> Matcher:
        """The library's indexes, built on first use and shared by every scan of this context."""
        if self.library is None:
            raise NoLibraryError("no signature library loaded: scanning without one would call everything clear")
        if self._matcher is None or self._matcher.library is not self.library:
            from scanner.matching import Matcher

            self._matcher = Matcher.build(self.library)
        return self._matcher

    @property
    def library_version(self) -> str | None:
        return self.library.library_version if self.library is not None else None

    @property
    def model_version(self) -> str | None:
        return self.model.version if self.model is not None else None

    @property
    def review_threshold(self) -> float | None:
        if self.model is None:
            return None
        configured = self.settings.classify.review_threshold
        if isinstance(configured, str):  # a named operating point (the CLI resolves it before it gets here)
            return self.model.operating_point(configured)
        return self.model.review_threshold if configured is None else configured


def with_previews(context: ScanContext, on: bool) -> ScanContext:
    """The context that renders previews of flag and review results (``on``) or not: the same
    object when it already does, else a copy sharing its library, model and built indexes."""
    if context.settings.previews == on:
        return context
    copy = dataclasses.replace(context, settings=dataclasses.replace(context.settings, previews=on))
    copy._matcher = context._matcher
    return copy


def settings_json(settings: Settings) -> str:
    """Settings as the JSON text a spec carries (sorted keys: equal settings, equal text)."""
    return json.dumps(dataclasses.asdict(settings), sort_keys=True)


@dataclass(frozen=True)
class ContextSpec:
    """What another process needs to build its own scan context: plain strings, no objects.

    ``library``: a library folder (None: the shipped demo library); ``model``: a model
    folder, ``"shipped"`` for that process's own installed demo model, or None (matching only)."""

    library: str | None
    settings_json: str
    model: str | None = None

    @classmethod
    def of(cls, context: ScanContext, library: str | None) -> ContextSpec:
        """The spec of a context whose library was loaded from ``library``."""
        model = None if context.model is None else (context.model.source or str(context.model.path))
        return cls(library, settings_json(context.settings), model)

    @property
    def settings(self) -> Settings:
        return settings_from_dict(json.loads(self.settings_json))

    def to_json(self) -> str:
        return json.dumps([self.library, self.settings_json, self.model])

    @classmethod
    def from_json(cls, text: str) -> ContextSpec:
        library, settings, model = json.loads(text)
        return cls(library, settings, model)

    def load(self) -> ScanContext:
        """This process's context for the spec, loaded once and then reused."""
        return context_for(self.library, self.settings_json, self.model)


_CONTEXTS: dict[tuple[str | None, str, str | None], ScanContext] = {}


def context_for(library: str | None, settings_json: str, model: str | None = None) -> ScanContext:
    """The scan context of a worker process, loaded once per process and key: the library,
    and the model refit here once - the model file holds rows, not an estimator to unpickle."""
    key = (library, settings_json, model)
    context = _CONTEXTS.get(key)
    if context is None:
        from scanner.classify.model import load_model
        from scanner.library import SignatureLibrary, shipped_library_path

        lib = SignatureLibrary.load(library or shipped_library_path())
        component_model = None if model is None else load_model(None if model == "shipped" else model)
        settings = settings_from_dict(json.loads(settings_json))
        context = _CONTEXTS[key] = ScanContext(settings=settings, library=lib, model=component_model)
    return context
