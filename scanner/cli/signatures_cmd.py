"""``meshscan signatures ...`` and ``meshscan allowlist ...``: manage a signature library."""

from __future__ import annotations

import json

import click

from scanner.cli.exitcodes import CommandError, ExitCode, exit_with
from scanner.util import file_sha256, utc_now

CATEGORY_CHOICES = click.Choice(
    ["barrel", "frame_or_receiver", "slide_or_cylinder", "bolt_or_breech_block", "other_component", "accessory"]
)


def _library_required(fn):
    return click.option("--library", required=True, type=click.Path(file_okay=False), help="Library folder.")(fn)


def _load(path: str):
    from scanner.library import LibraryError, SignatureLibrary

    try:
        return SignatureLibrary.load(path)
    except LibraryError as exc:
        raise CommandError(str(exc)) from None


@click.group("signatures")
def signatures_group() -> None:
    """Create and maintain a signature library (descriptors and hashes, never geometry)."""


@signatures_group.command("init")
@_library_required
@click.option("--name", default="", help="A name for the library.")
@click.option("--description", default="", help="What it holds and who maintains it.")
def init_cmd(library: str, name: str, description: str) -> None:
    """Create an empty library folder."""
    from pathlib import Path

    from scanner.library import SignatureLibrary

    if (Path(library) / "manifest.json").exists():
        raise CommandError(f"{library} already holds a library")
    SignatureLibrary.create(library, name=name, description=description).save()
    click.echo(f"created empty library {library}")


@signatures_group.command("add")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@_library_required
@click.option("--category", required=True, type=CATEGORY_CHOICES)
@click.option("--source", required=True, help="Where the file came from (a case, a report, a takedown).")
@click.option("--note", default="", help="Free text kept with the signature.")
def add_cmd(files: tuple[str, ...], library: str, category: str, source: str, note: str) -> None:
    """Enrol FILES (each body, and each archive member) into the library."""
    from scanner.enrol import enrol
    from scanner.library import LibraryError
    from scanner.sinks.output import terminal_safe

    lib = _load(library)
    failed = 0
    for path in files:
        try:
            results = enrol(lib, path, category, source, note)
        except LibraryError as exc:  # e.g. a reference set built for another descriptor version
            raise CommandError(str(exc)) from None
        for r in results:
            name = path + (f" :: {r.member}" if r.member else "")
            click.echo(f"{r.status:12s} {r.signature_id or '-':20s} {terminal_safe(name)}")
            if r.status == "added" and not r.distinctive:
                click.echo(
                    f"  warning: {r.signature_id} is not distinctive (it is within sampling noise of common benign "
                    f"shapes; threshold {r.threshold:.4f}): only exact and near-identical copies will match",
                    err=True,
                )
            for entry in r.dropped_allow:
                click.echo(
                    f"  allowlist entry {entry.label()} dropped: {r.signature_id} has its hash "
                    "(a signature always wins over an allowlist entry)",
                    err=True,
                )
            failed += r.status.startswith("unreadable")
    lib.save()
    click.echo(f"library {library}: {len(lib)} signature(s), version {lib.library_version}")
    exit_with(ExitCode.INCOMPLETE if failed else ExitCode.OK)


@signatures_group.command("list")
@_library_required
@click.option("--json", "as_json", is_flag=True, help="One JSON object per signature.")
def list_cmd(library: str, as_json: bool) -> None:
    """List the signatures."""
    from dataclasses import asdict

    from scanner.exchange.source import bank_of

    lib = _load(library)
    tolerance = _tolerances(lib)
    if as_json:
        for i, s in enumerate(lib.signatures):
            publisher, key = bank_of(s.source) or (None, None)
            click.echo(json.dumps({**asdict(s), **tolerance[i], "publisher": publisher, "publisher_key": key}))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from scanner.sinks.output import terminal_safe

    # a library may come from a partner (merge): its names, sources and notes are shown inert
    title = f"{lib.name} ({len(lib)} signatures, version {lib.library_version})"
    table = Table(title=Text(terminal_safe(title)))
    for col in ("id", "category", "source", "added", "bodies", "triangles", "matchable", "note"):
        table.add_column(col, overflow="fold")
    for i, s in enumerate(lib.signatures):
        t = tolerance[i]
        matchable = (
            f"{t['matchable_rows']}/{t['rows']} rows, <= {t['tolerance']:.3f}"
            + ("" if t["distinctive"] else " (exact copies only)")
            + f"; {t['matchable_pieces']}/{t['pieces']} pieces"
            + f"; local: {t['ring_patches']} ring / {t['fold_patches']} fold patches"
            + ("" if t["local_matchable"] else " (too few to match on)")
        )
        if s.disabled:  # kept in the library, never matched (e.g. a confirmation overturned on appeal)
            matchable = f"DISABLED by {s.disabled.get('by')} at {s.disabled.get('at')}: {s.disabled.get('why')}"
        cells = (s.id, s.category, s.source, s.added, s.bodies, s.triangles, matchable, s.note)
        table.add_row(*(Text(terminal_safe(c)) for c in cells))
    Console().print(table)
    _print_banks(library)


def _print_banks(library: str) -> None:
    """The publishers a subscribed library holds signatures of, with their key fingerprints."""
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from scanner.exchange.errors import Refused
    from scanner.exchange.subscribe import banks
    from scanner.sinks.output import terminal_safe

    try:
        held = banks(Path(library).resolve())
    except Refused:
        return  # an unreadable banks.json: the signatures above still stand
    if not held:
        return
    table = Table(title="subscribed publishers (compare each key with the fingerprint its publisher gave you)")
    for col in ("publisher", "key", "version", "signatures", "allowlist"):
        table.add_column(col, overflow="fold", no_wrap=col == "key")  # a fingerprint is compared whole
    for b in held:
        trusted = "trusted" if b["allowlist_trusted"] else "not imported"
        cells = (b["publisher"], b["key"], b["version"], b["signatures"], trusted)
        table.add_row(*(Text(terminal_safe(c)) for c in cells))
    Console().print(table)


@signatures_group.command("status")
@_library_required
@click.option("--json", "as_json", is_flag=True, help="The status as one JSON object.")
def status_cmd(library: str, as_json: bool) -> None:
    """What a library is and where its signatures come from: versions, counts, each subscribed
    publisher with its key fingerprint (compare it with the one the publisher gave you out of
    band), the version held and whether its allowlist is trusted; disabled signatures; and the
    library's hash-chained audit log with its head hash. Exit 3 if the audit log does not verify.
    """
    from scanner.exchange.errors import Refused
    from scanner.exchange.status import library_status

    try:
        status = library_status(library, _load(library))
    except Refused as exc:
        raise CommandError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(status))
    else:
        _print_status(status)
    if not status["audit"]["ok"]:
        for p in status["audit"]["problems"]:
            click.echo(f"FAILED: audit log: {p}", err=True)
        exit_with(ExitCode.FATAL)


def _print_status(status: dict) -> None:
    from rich.console import Console
    from rich.text import Text

    from scanner.sinks.output import terminal_safe

    lib, audit = status["library"], status["audit"]
    lines = [
        f"library {lib['name'] or '(unnamed)'}: version {lib['library_version']}, descriptor "
        f"{lib['descriptor_version']}, {lib['signatures']} signature(s), {lib['allowlist']} allowlist entr"
        + ("y" if lib["allowlist"] == 1 else "ies"),
        f"subscribed publishers: {len(status['banks']) or 'none'}",
    ]
    for b in status["banks"]:
        lines.append(
            f"  {b['publisher']}  key {b['key']}  version {b['version']}  {b['signatures']} signature(s)  allowlist "
            + ("trusted" if b["allowlist_trusted"] else "not trusted")
            + f"  updated {b['updated']}"
        )
    lines.append(f"disabled signatures: {len(status['disabled']) or 'none'}")
    for sid, d in sorted(status["disabled"].items()):
        lines.append(f"  {sid} by {d.get('by')} at {d.get('at')}: {d.get('why')} (from {d.get('held_by')})")
    state = "verified" if audit["ok"] else "FAILED"
    lines.append(f"audit log: {audit['events']} event(s), {state}, head {audit['head']}")
    lines += [f"  note: {n}" for n in audit["notes"]]
    console = Console(highlight=False)
    for line in lines:  # names and reasons come from partners: shown inert
        console.print(Text(terminal_safe(line)), soft_wrap=True)  # a fingerprint is compared whole


def _tolerances(lib) -> list[dict]:  # noqa: ANN001 - SignatureLibrary
    """Per signature, how distinctive enrolment found it: rows matchable as near-duplicates
    (threshold above 0), the widest row threshold, and whether that clears the descriptor's
    sampling noise (if not, only exact or near-identical copies match); and how many of its
    plane-cut pieces (partial copies, :mod:`scanner.features.pieces`) are matchable."""
    from scanner.enrol import SAMPLING_NOISE
    from scanner.features.affine import AFFINE_ROW
    from scanner.features.pieces import piece_share

    out = [
        {"rows": 0, "matchable_rows": 0, "tolerance": 0.0, "pieces": 0, "matchable_pieces": 0} for _ in lib.signatures
    ]
    for (sig, body), threshold in zip(lib.rows.tolist(), lib.thresholds.tolist(), strict=True):
        if body == AFFINE_ROW:  # the whitened row for stretched copies: not a near-duplicate row
            continue
        if piece_share(body) is not None:  # plane-cut pieces: partial copies, counted apart
            out[sig]["pieces"] += 1
            out[sig]["matchable_pieces"] += threshold > 0
            continue
        out[sig]["rows"] += 1
        out[sig]["matchable_rows"] += threshold > 0
        out[sig]["tolerance"] = max(out[sig]["tolerance"], round(float(threshold), 5))
    for t in out:
        t["distinctive"] = t["tolerance"] >= SAMPLING_NOISE
    # distinctive local patches per kind (codes benign references also produce were dropped at
    # enrolment); a signature with fewer than MIN_MATCHED of both is never matched on them
    import numpy as np

    from scanner.features.patches import FOLD, MIN_MATCHED, RING

    kinds = (np.asarray(lib.patch_codes) & np.uint64(1)).astype(np.int64)
    sigs = np.asarray(lib.patch_sigs, dtype=np.int64)
    counts = {k: np.bincount(sigs[kinds == k], minlength=len(out)) for k in (RING, FOLD)}
    for i, t in enumerate(out):
        t["ring_patches"], t["fold_patches"] = int(counts[RING][i]), int(counts[FOLD][i])
        t["local_matchable"] = max(t["ring_patches"], t["fold_patches"]) >= MIN_MATCHED
    return out


@signatures_group.command("remove")
@click.argument("ids", nargs=-1, required=True)
@_library_required
def remove_cmd(ids: tuple[str, ...], library: str) -> None:
    """Remove signatures by id."""
    lib = _load(library)
    removed = lib.remove(list(ids))
    missing = sorted(set(ids) - set(removed))
    lib.save()
    click.echo(f"removed {len(removed)} signature(s)" + (f"; not found: {', '.join(missing)}" if missing else ""))
    exit_with(ExitCode.INCOMPLETE if missing else ExitCode.OK)


@signatures_group.command("verify")
@click.argument("bundle", required=False, type=click.Path(dir_okay=False))
@click.option("--library", type=click.Path(file_okay=False), help="Library folder to check.")
@click.option("--trust", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="With BUNDLE: a trusted publisher's public key (repeat for several).")  # fmt: skip
def verify_cmd(bundle: str | None, library: str | None, trust: tuple[str, ...]) -> None:
    """Check a library's checksums and descriptor version, or a BUNDLE's signature against
    --trust keys; exit 3 if it must not be used."""
    from scanner.library import SignatureLibrary

    if bundle:
        _verify_bundle(bundle, trust)
        return
    if not library:
        raise CommandError("give --library DIR, or a BUNDLE file with --trust PUBKEY")
    problems = SignatureLibrary.verify(library)
    if problems:
        for p in problems:
            click.echo(f"FAILED: {p}", err=True)
        exit_with(ExitCode.FATAL)
    lib = SignatureLibrary.load(library)
    _verify_audit(library)
    click.echo(
        f"OK: {library}: {len(lib)} signature(s), version {lib.library_version}, descriptor {lib.descriptor_version}"
    )


def _verify_audit(library: str) -> None:
    """A subscribed library's audit log (updates, disables, enables) must verify too."""
    from pathlib import Path

    from scanner.exchange.errors import Refused
    from scanner.exchange.events import verify_events
    from scanner.exchange.subscribe import read_state

    try:
        state = read_state(Path(library).resolve())
    except Refused as exc:
        click.echo(f"FAILED: {exc}", err=True)
        exit_with(ExitCode.FATAL)
    check = verify_events(state["events"], state["disabled"])
    for p in check.problems:
        click.echo(f"FAILED: audit log: {p}", err=True)
    if not check.ok:
        exit_with(ExitCode.FATAL)


@signatures_group.command("merge")
@click.argument("others", nargs=-1, required=True, type=click.Path(exists=True))
@_library_required
@click.option(
    "--with-allowlist",
    is_flag=True,
    help="Also import the others' allowlist entries (by default they are counted, not imported: "
    "an allowlist entry suppresses matches). Entries equal to an enrolled signature are refused.",
)
@click.option("--json", "as_json", is_flag=True, help="The summary as one JSON object per merged library.")
def merge_cmd(others: tuple[str, ...], library: str, with_allowlist: bool, as_json: bool) -> None:
    """Merge other libraries (folders or JSON exports) into --library, skipping duplicates.

    Prints, per merged library, what it imported of each kind (signatures added / duplicate;
    allowlist entries added / already present / refused, or not imported without
    --with-allowlist) and every conflict: an imported allowlist entry equal to a signature's
    hash is refused, and a local allowlist entry equal to an imported signature's hash is
    dropped (the signature wins). Exit code 2 when an entry was refused (the rest is merged).
    """
    from scanner.library import LibraryError, open_any

    lib = _load(library)
    refused = 0
    for other in others:
        try:
            report = lib.merge(open_any(other), with_allowlist=with_allowlist)
        except LibraryError as exc:
            raise CommandError(str(exc)) from None
        refused += len(report.allow_refused)
        if as_json:
            click.echo(json.dumps({"source": other, **report.to_dict()}))
        else:
            click.echo(f"{other}:")
            for line in report.lines():
                click.echo(f"  {line}")
    lib.save()
    click.echo(f"library {library}: {len(lib)} signature(s), version {lib.library_version}", err=as_json)
    if refused:
        click.echo(f"meshscan: {refused} allowlist entr{'y' if refused == 1 else 'ies'} refused", err=True)
        exit_with(ExitCode.INCOMPLETE)


@signatures_group.command("export")
@_library_required
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="JSON file to write.")
@click.option("--sign", "sign_key", type=click.Path(exists=True, dir_okay=False), help="Private key (signatures "
              "keygen): write a signed bundle for subscribers instead of a plain export.")  # fmt: skip
@click.option(
    "--publisher", default="", help="With --sign: the publisher's name in the bundle (default: the library's)."
)
@click.option("--previous", type=click.Path(exists=True, dir_okay=False), help="With --sign: the last bundle "
              "published; the new one gets the next version and tombstones for what was removed.")  # fmt: skip
@click.option("--bundle-version", type=int, default=None, help="With --sign: the version number (only grows).")
@click.option("--include-names", is_flag=True, help="With --sign: keep file names, sources and notes (left out by "
              "default: they are often case or uploader ids).")  # fmt: skip
def export_cmd(
    library: str,
    out_path: str,
    sign_key: str | None,
    publisher: str,
    previous: str | None,
    bundle_version: int | None,
    include_names: bool,
) -> None:
    """Export the library as one JSON document to share (descriptors and hashes, no geometry);
    with --sign, as a signed, versioned bundle for 'signatures update'."""
    lib = _load(library)
    if sign_key:
        from pathlib import Path

        from scanner.exchange.bundle import make_bundle, open_bundle
        from scanner.exchange.errors import Refused
        from scanner.exchange.keys import load_private, public_of

        try:
            key = load_private(sign_key)
            prior = Path(previous).read_bytes() if previous else None
            data = make_bundle(lib, key, publisher or lib.name, bundle_version, prior, include_names)
            bundle = open_bundle(data, [public_of(key)])
        except Refused as exc:
            raise CommandError(str(exc)) from None
        Path(out_path).write_bytes(data)
        click.echo(f"signed bundle {out_path}: {bundle.summary()}")
        return
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(lib.export_json(), fh)
    click.echo(f"exported {len(lib)} signature(s) to {out_path}")


@signatures_group.command("keygen")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the key pair.")
@click.option("--name", default="publisher", show_default=True, help="File name stem: NAME.key and NAME.pub.")
def keygen_cmd(out_dir: str, name: str) -> None:
    """Make an Ed25519 key pair for signing bundles: keep NAME.key secret, give NAME.pub (and
    its fingerprint) to subscribers."""
    from scanner.exchange.errors import Refused
    from scanner.exchange.keys import keygen

    try:
        private, public, fp = keygen(out_dir, name)
    except Refused as exc:
        raise CommandError(str(exc)) from None
    click.echo(f"private key {private} (keep it secret)\npublic key  {public}\nfingerprint {fp}")


def _trusted(paths: tuple[str, ...]):  # noqa: ANN202 - list[PublicKey]
    from scanner.exchange.errors import Refused
    from scanner.exchange.keys import load_public

    try:
        return [load_public(p) for p in paths]
    except Refused as exc:
        raise CommandError(str(exc)) from None


def _verify_bundle(bundle_path: str, trust: tuple[str, ...]) -> None:
    from pathlib import Path

    from scanner.exchange.bundle import open_bundle
    from scanner.exchange.errors import Refused

    try:
        bundle = open_bundle(Path(bundle_path).read_bytes(), _trusted(trust))
    except Refused as exc:
        click.echo(f"REFUSED: {bundle_path}: {exc}", err=True)
        exit_with(ExitCode.FATAL)
    except OSError as exc:
        raise CommandError(f"cannot read {bundle_path}: {exc}") from None
    click.echo(f"OK: {bundle_path}: {bundle.summary()}")


@click.group("allowlist")
def allowlist_group() -> None:
    """Known-benign files whose matches are suppressed."""


@allowlist_group.command("add")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@_library_required
@click.option("--note", default="", help="Why the file is benign.")
@click.option("--by", "by", default="", help="Who decided.")
def allow_add_cmd(files: tuple[str, ...], library: str, note: str, by: str) -> None:
    """Add FILES (their sha256 and geometry hash) to the allowlist.

    A file whose sha256 or geometry hash equals an enrolled signature's is refused, naming the
    signature: an allowlist never silences the library's own exact match. The other files
    are added; the exit code is 2 when any was refused.
    """
    from scanner.library import AllowEntry, AllowlistConflict
    from scanner.loading import iter_meshes

    lib = _load(library)
    now = utc_now()
    refused = 0
    for path in files:
        sha = file_sha256(path)
        hashes = [r.mesh.geometry_hash for r in iter_meshes(path) if r.mesh is not None] or [None]
        for gh in hashes:
            try:
                added = lib.allow(AllowEntry(sha256=sha, geometry_hash=gh, added=now, note=note, by=by))
            except AllowlistConflict as exc:
                click.echo(f"refused: {path}: {exc}", err=True)
                refused += 1
                continue
            click.echo(f"{'allowed' if added else 'already allowed'}: {path}")
    lib.save()
    if refused:
        exit_with(ExitCode.INCOMPLETE)


@allowlist_group.command("list")
@_library_required
def allow_list_cmd(library: str) -> None:
    """List allowlist entries as JSON lines."""
    from dataclasses import asdict

    for a in _load(library).allowlist:
        click.echo(json.dumps(asdict(a)))


@signatures_group.command("update")
@click.argument("source")
@_library_required
@click.option("--trust", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False),
              help="A trusted publisher's public key (repeat for several publishers).")  # fmt: skip
@click.option("--trust-allowlist", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="A publisher key also trusted for allowlist entries (else they are not imported).")  # fmt: skip
@click.option("--max-size", default=256 << 20, show_default=True, type=click.IntRange(1), help="Download cap, bytes.")
@click.option("--json", "as_json", is_flag=True, help="What changed, as one JSON object.")
def update_cmd(
    source: str, library: str, trust: tuple[str, ...], trust_allowlist: tuple[str, ...], max_size: int, as_json: bool
) -> None:
    """Subscribe --library to a publisher's signed bundle (a path or an fsspec URL), like freshclam.

    Downloads with a size cap, verifies the signature against --trust keys, refuses a rollback,
    applies what changed (added, removed, disabled per category) as the publisher's bank, and
    swaps the library in atomically. Exit code 0 updated, 1 already current, 3 refused.
    """
    from scanner.exchange.errors import Refused
    from scanner.exchange.subscribe import update
    from scanner.library import LibraryError

    try:
        report = update(source, library, _trusted(trust), _trusted(trust_allowlist), max_size)
    except (Refused, LibraryError) as exc:
        raise CommandError(f"refused {source}: {exc}") from None
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        for line in report.lines():
            click.echo(line)
    exit_with(ExitCode.OK if report.status == "updated" else ExitCode.FOUND)


def _set_disabled(ids: tuple[str, ...], library: str, by: str, reason: str, enable: bool) -> None:
    from scanner.exchange.errors import Refused
    from scanner.exchange.subscribe import set_disabled

    try:
        changed = set_disabled(library, ids, by, reason, enable)
    except Refused as exc:
        raise CommandError(str(exc)) from None
    missing = sorted(set(ids) - set(changed))
    click.echo(
        f"{'enabled' if enable else 'disabled'} {len(changed)} signature(s)"
        + (f"; not found: {', '.join(missing)}" if missing else "")
    )
    exit_with(ExitCode.INCOMPLETE if missing else ExitCode.OK)


@signatures_group.command("disable")
@click.argument("ids", nargs=-1, required=True)
@_library_required
@click.option("--by", required=True, help="Who decided.")
@click.option("--why", "reason", required=True, help="Why (kept in the library's audit trail).")
def disable_cmd(ids: tuple[str, ...], library: str, by: str, reason: str) -> None:
    """Disable signatures of a subscribed library (kept out through updates; audited)."""
    _set_disabled(ids, library, by, reason, enable=False)


@signatures_group.command("enable")
@click.argument("ids", nargs=-1, required=True)
@_library_required
@click.option("--by", required=True, help="Who decided.")
@click.option("--why", "reason", default="", help="Why.")
def enable_cmd(ids: tuple[str, ...], library: str, by: str, reason: str) -> None:
    """Enable disabled signatures again (they return with the next update of their bank)."""
    _set_disabled(ids, library, by, reason, enable=True)


@signatures_group.command("export-signals")
@_library_required
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Text file to write.")
@click.option(
    "--all-rows", is_flag=True, help="Every matchable descriptor row (bodies, pieces), not only the whole file."
)
def export_signals_cmd(library: str, out_path: str, all_rows: bool) -> None:
    """Write the library's signals for HMA / python-threatexchange: one '<signal type> <value>'
    per line (its local-file exchange format): geometry hashes, descriptor rows and patch sketches."""
    from scanner.exchange.signals import library_signals

    rows = library_signals(_load(library), all_rows)
    with open(out_path, "w", encoding="utf-8") as fh:
        fh.writelines(f"{kind} {value}\n" for _, kind, value in rows)
    click.echo(f"wrote {len(rows)} signal(s) to {out_path}")
