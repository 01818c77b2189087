"""Halt flags: K of N trusted developers can stop a package from being installed.

If rebuilders find a backdoor, the people who watch them need a brake.  The
rules (modelled on TUF's treatment of trust files):

* A **statement** is a signed document ``{"signed": {...}, "signatures": [...]}``
  whose ``signed`` part has ``_type = "rebuildgate-halt"``, an ``id``, an
  ``action`` (``halt`` or ``lift``), a ``version`` (integer), a ``reason``,
  ``issued`` and ``expires`` times, and what it covers: ``all = true`` or any
  of ``packages`` / ``versions`` / ``repositories`` (fnmatch patterns; a
  package pattern matches the binary or the source name; a version pattern
  matches the version with or without its epoch; a repository pattern
  matches the repository id of :mod:`rebuildgate.repoid`, or what a pattern
  written in another form, ``https://host/path/*``, names) / ``sha256``
  (exact file digests); every given field must match.  Names and versions
  are the package file's own whenever the file is at hand, never only the
  index's.
* A statement counts only when at least K **distinct** halt signers (distinct
  people and distinct keys) signed it.  Forged, duplicated and unknown-key
  signatures do not count.  Lifting needs K signatures too: a lift is a
  statement with the same id, ``action = "lift"`` and a higher version.
* Statements are **sticky**: once a K-signed halt was seen it stays in force
  (it is remembered in the state file) until it expires or a K-signed lift
  with a higher version arrives.  A feed that simply stops listing it, or a
  statement with a lower version, changes nothing.
* A **feed** is a signed document (``_type = "rebuildgate-halt-feed"``,
  ``version``, ``expires``, ``statements``: a list of statement documents)
  signed by at least ``feed_threshold`` halt signers.  A feed never goes
  back: the highest version seen per feed is remembered, and an older one is
  refused (rollback).  An expired feed is ignored.
* If no feed could be refreshed for longer than ``max_age``, the policy's
  ``stale`` decides: ``block`` every package, or ``warn``.
* The local admin may **override** one halt by id; the override is recorded
  (who, when, why), logged, and shown in every verdict it affects.
* What a feed taught is used only once it is **saved** in the state file:
  a run that cannot save it (a full disk, no permission) keeps the new
  halts for itself but no lift, no newer feed version, and the stale rule
  applies at once, saying why.  An unreadable state file is a halt on
  everything (``halt-error``): it could hide halts.

The pure part (parsing, signature counting, matching) is separated from the
I/O part (:class:`HaltWatch`: fetching feeds, the state file).
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from . import repoid
from securesystemslib.formats import encode_canonical

from .atomic import write_atomic
from .decide import HaltNotice
from .errors import EvidenceError, MalformedEvidence, RebuildgateError
from .evidence import KeySet, load_keyset, parse_metablock, signers_of
from .fetch import location
from .model import Artifact
from .policy import HaltSettings

log = logging.getLogger("rebuildgate")

STATEMENT_TYPE = "rebuildgate-halt"
FEED_TYPE = "rebuildgate-halt-feed"
STATE_FILE = "halts.json"
STALE_ID = "halt-feeds-stale"
UNSAVED_ID = "halt-state-unsaved"
INVALID_ID = "halt-state-invalid"
#: Larger state files are refused unread (a real one holds a few hundred statements).
MAX_STATE_BYTES = 32 * 1024 * 1024
#: How far a stored time may lie ahead of the clock before it is not believed.
CLOCK_SKEW = 300.0
_SHA256 = re.compile(r"[0-9a-f]{64}")


class HaltError(RebuildgateError):
    """A halt document or the halt state cannot be used."""


class BelowThreshold(EvidenceError):
    kind = "below-threshold"


class Rollback(EvidenceError):
    kind = "rollback"


class Expired(EvidenceError):
    kind = "expired"


# --------------------------------------------------------------------------
# Pure part


def parse_time(value: Any, what: str) -> _dt.datetime:
    """ISO 8601 time (or date) -> aware UTC datetime."""
    if not isinstance(value, str):
        raise MalformedEvidence(f"{what} must be an ISO 8601 time string")
    text = value.strip()
    try:
        if len(text) == 10:
            parsed = _dt.datetime.combine(_dt.date.fromisoformat(text), _dt.time(), _dt.timezone.utc)
        else:
            parsed = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=_dt.timezone.utc)
        return parsed.astimezone(_dt.timezone.utc)
    except (ValueError, OverflowError):
        raise MalformedEvidence(f"{what} {text[:40]!r} is not a usable ISO 8601 time") from None


def format_time(t: _dt.datetime) -> str:
    return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _patterns(signed: dict, key: str) -> tuple[str, ...]:
    value = signed.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise MalformedEvidence(f"halt statement: {key} must be a list of non-empty strings")
    return tuple(value)


def _integer(signed: dict, key: str, what: str) -> int:
    value = signed.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedEvidence(f"{what}: {key} must be a non-negative integer")
    return value


@dataclass(frozen=True)
class Statement:
    """A halt or lift that K distinct signers signed."""

    id: str
    action: str
    version: int
    reason: str
    issued: _dt.datetime
    expires: _dt.datetime
    everything: bool
    packages: tuple[str, ...]
    versions: tuple[str, ...]
    repositories: tuple[str, ...]
    signers: tuple[str, ...]
    raw: bytes = field(repr=False, default=b"")
    origin: str = ""
    sha256: tuple[str, ...] = ()
    digest: str = ""  # sha256 of the canonical signed part: what an override names, besides id and version

    def expired(self, now: _dt.datetime) -> bool:
        return now >= self.expires

    def matches(self, artifact: Artifact) -> bool:
        """Whether this statement covers *artifact*.

        A version pattern matches the version with or without its epoch:
        rebuilders publish one attestation for both (file names and URLs
        drop the epoch), so an epoch the index adds must not escape a halt.
        """
        if self.everything:
            return True
        if not (self.packages or self.versions or self.repositories or self.sha256):
            return False
        if self.sha256 and artifact.sha256.lower() not in self.sha256:
            return False
        names = [n for n in (artifact.name, artifact.source, artifact.filename) if n]
        if self.packages and not any(fnmatch.fnmatchcase(n, p) for n in names for p in self.packages):
            return False
        versions = {artifact.version or "", artifact.upstream_version or ""}
        patterns = {p[2:] if p.startswith("0:") else p for p in self.versions}  # epoch 0 is no epoch
        if self.versions and not any(fnmatch.fnmatchcase(v, p) for v in versions for p in patterns):
            return False
        if self.repositories and not repoid.matches_intended(artifact.repo, self.repositories):
            return False
        return True

    def pattern_findings(self) -> list[repoid.Finding]:
        """Repository patterns that no repository id can match as written.

        They still halt what they were meant to (:meth:`matches` reads them
        as :func:`rebuildgate.repoid.intended` says), but ``halt status``
        and ``check-config`` name them so their signers fix them.
        """
        return repoid.check_patterns(self.repositories)


def _signed_by(raw: bytes, kind: str, signers: list[KeySet], threshold: int, what: str) -> tuple[dict, tuple[str, ...]]:
    """The signed part of a halt document, once K distinct signers are checked.

    Signatures come first: nothing an unauthenticated document says is even
    parsed (a crafted date must not be able to raise where a bad signature
    would simply not count).
    """
    signed, sigs, data = parse_metablock(raw)
    if not isinstance(signed, dict) or signed.get("_type") != kind:
        raise MalformedEvidence(f"not a {what} (_type must be {kind!r})")
    who = signers_of(sigs, data, signers)
    if len(who) < threshold:
        ident = signed.get("id") if isinstance(signed.get("id"), str) else ""
        raise BelowThreshold(f"{what} {ident[:40]} has {len(who)} of {threshold} required signatures "
                             f"({signature_count(len(sigs), who)})".replace("  ", " "))
    return signed, tuple(sorted(who))


def signature_count(present: int, valid: dict[str, str] | Iterable[str]) -> str:
    """"2 signatures present, none valid" / "2 signatures, 1 valid from distinct trusted signers (alice)":
    a forged signature and a missing one are different problems for whoever must fix them."""
    names = sorted(valid)
    plural = "s" if present != 1 else ""
    if not names:
        return f"{present} signature{plural} present, none valid" if present else "no signature"
    return f"{present} signature{plural}, {len(names)} valid from distinct trusted signers ({', '.join(names)})"


def read_statement(raw: bytes, signers: list[KeySet], threshold: int, origin: str = "") -> Statement:
    """Check that K distinct signers signed a statement, then parse it."""
    signed, who = _signed_by(raw, STATEMENT_TYPE, signers, threshold, "halt statement")
    ident = signed.get("id")
    if not isinstance(ident, str) or not ident or len(ident) > 128 or any(ord(c) < 32 for c in ident):
        raise MalformedEvidence("halt statement: id must be a short printable string")
    action = signed.get("action")
    if action not in ("halt", "lift"):
        raise MalformedEvidence(f"halt statement {ident}: action must be 'halt' or 'lift'")
    reason = signed.get("reason")
    if not isinstance(reason, str) or not reason:
        raise MalformedEvidence(f"halt statement {ident}: reason is required")
    everything = signed.get("all", False)
    if not isinstance(everything, bool):
        raise MalformedEvidence(f"halt statement {ident}: all must be true or false")
    digests = tuple(d.lower() for d in _patterns(signed, "sha256"))
    if not all(_SHA256.fullmatch(d) for d in digests):
        raise MalformedEvidence(f"halt statement {ident}: sha256 must list 64-hex-digit digests")
    statement = Statement(
        id=ident, action=action, version=_integer(signed, "version", f"halt statement {ident}"),
        reason=" ".join(reason.split())[:300],
        issued=parse_time(signed.get("issued"), "issued"), expires=parse_time(signed.get("expires"), "expires"),
        everything=everything, packages=_patterns(signed, "packages"), versions=_patterns(signed, "versions"),
        repositories=_patterns(signed, "repositories"), signers=who, raw=raw, origin=origin, sha256=digests,
        digest=hashlib.sha256(encode_canonical(signed).encode("utf-8")).hexdigest())
    if action == "halt" and not (everything or statement.packages or statement.versions or statement.repositories
                                 or statement.sha256):
        raise MalformedEvidence(f"halt statement {ident} covers nothing "
                                "(set all, packages, versions, repositories or sha256)")
    return statement


@dataclass(frozen=True)
class Feed:
    version: int
    expires: _dt.datetime
    statements: tuple[bytes, ...]
    signers: tuple[str, ...]


def read_feed(raw: bytes, signers: list[KeySet], threshold: int, now: _dt.datetime) -> Feed:
    signed, who = _signed_by(raw, FEED_TYPE, signers, threshold, "halt feed")
    version = _integer(signed, "version", "halt feed")
    expires = parse_time(signed.get("expires"), "feed expires")
    docs = signed.get("statements", [])
    if not isinstance(docs, list) or not all(isinstance(d, dict) for d in docs):
        raise MalformedEvidence("halt feed: statements must be a list of signed statements")
    if now >= expires:
        raise Expired(f"halt feed v{version} expired at {format_time(expires)}")
    return Feed(version, expires, tuple(json.dumps(d).encode() for d in docs), who)


def merge(known: dict[str, Statement], incoming: Statement) -> bool:
    """Keep the highest version per id; a lower or equal version changes nothing."""
    current = known.get(incoming.id)
    if current is None or incoming.version > current.version:
        known[incoming.id] = incoming
        return True
    return False


def override_applies(entry: Any, st: Statement) -> bool:
    """An admin's override covers exactly the halt it was given for: the same
    id, version and content.  A re-issued halt (a new version, perhaps with a
    wider reach) is not covered by an override of the old one."""
    if not isinstance(entry, dict) or entry.get("version") != st.version:
        return False
    return entry.get("digest") in (None, st.digest)


def describe_override(entry: dict) -> str:
    return f"{entry.get('by')} at {entry.get('at')}: {entry.get('reason')}"


def notices(artifact: Artifact, statements: Iterable[Statement], overrides: dict[str, dict],
            now: _dt.datetime) -> tuple[HaltNotice, ...]:
    """The halts in force for *artifact*, overridden ones marked as such."""
    out = []
    for st in statements:
        if st.action != "halt" or st.expired(now) or not st.matches(artifact):
            continue
        o = overrides.get(st.id)
        overridden = describe_override(o) if o and override_applies(o, st) else None
        out.append(HaltNotice(st.id, st.reason, st.signers, overridden))
    return tuple(out)


# --------------------------------------------------------------------------
# I/O part


@dataclass
class FeedStatus:
    url: str
    ok: bool
    message: str
    version: int | None = None


class HaltWatch:
    """Reads the feeds once per process and answers "which halts stop this?".

    The state file (``state_dir/halts.json``) keeps the highest feed versions
    seen, the last successful refresh of each feed, every K-signed statement
    seen (so a halt cannot be made to vanish by serving a feed without it),
    and the admin's overrides.  Front ends that drop privileges call
    :meth:`refresh` first, as root, so that what the feeds say is saved.
    If it cannot be saved, new halts still apply in this run, but lifts and
    feed versions do not, and the stale rule applies at once (``unsaved``).
    A state file that cannot be read fails every verdict (remembered for
    the run: it is not read again per package).
    """

    def __init__(self, settings: HaltSettings, transport: Any, policy_path: Path,
                 clock: Any = None) -> None:
        self.settings = settings
        self.transport = transport
        self.keysets = [load_keyset(s, i, policy_path, "halt.signer") for i, s in enumerate(settings.signers)]
        self.path = settings.state_dir / STATE_FILE
        self._now = clock or (lambda: _dt.datetime.now(_dt.timezone.utc))
        self._lock = threading.Lock()
        self._refreshed = False
        self._failure: HaltError | None = None
        self.unsaved: str | None = None  # why what the feeds said could not be saved
        self.invalid: list[str] = []  # stored statements that no longer verify: block everything
        self.dropped: list[str] = []  # stored statements the policy no longer counts (reported)
        self.status: list[FeedStatus] = []
        self.statements: dict[str, Statement] = {}
        self.rejected: list[str] = []
        self.state: dict[str, Any] = {}

    # -- state file ----------------------------------------------------------

    def _load_state(self) -> dict[str, Any]:
        try:
            size = self.path.stat().st_size
            if size > MAX_STATE_BYTES:
                raise HaltError(f"halt state {self.path} is {size} bytes (at most {MAX_STATE_BYTES}); "
                                "fix or remove it")
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"feeds": {}, "statements": {}, "overrides": {}}
        except (OSError, ValueError) as e:
            # An unreadable state would silently forget halts and versions.
            raise HaltError(f"halt state {self.path} is unreadable ({e}); fix or remove it") from None
        if not isinstance(data, dict):
            raise HaltError(f"halt state {self.path} is not a JSON object; fix or remove it")
        for key in ("feeds", "statements", "overrides"):
            if not isinstance(data.setdefault(key, {}), dict):
                raise HaltError(f"halt state {self.path}: {key} is not an object; fix or remove it")
        return data

    def _save_state(self) -> None:
        """Write the state atomically; OSError if it was not saved."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(self.state, indent=1, sort_keys=True).encode())

    # -- refresh ---------------------------------------------------------------

    def load_saved(self) -> None:
        """Only what the state file remembers, without reading any feed
        (``check-config`` shows halts this way: it must not wait on the network)."""
        self.state = self._load_state()
        for ident, entry in self.state["statements"].items():
            self._restore(str(ident), entry)

    def refresh(self) -> None:
        """Load state, read every feed, remember what counts; once per process.

        Raises HaltError if the state file cannot be read, now and on every
        later call (the failure is remembered for the run).
        """
        with self._lock:
            if self._failure is not None:
                raise self._failure
            if self._refreshed:
                return
            try:
                self.load_saved()
            except HaltError as e:
                self._failure = e
                raise
            saved_state = json.loads(json.dumps(self.state))
            saved_statements = dict(self.statements)
            changed = False
            for url in self.settings.feeds:
                changed |= self._refresh_feed(url)
            if changed:
                try:
                    self._save_state()
                except OSError as e:
                    self._unsaved(saved_state, saved_statements, f"cannot save halt state {self.path}: "
                                                                 f"{e.strerror or e}")
            self._refreshed = True

    def _restore(self, ident: str, entry: Any) -> None:
        """Take one stored statement back, or say why it no longer counts.

        It was K-signed when it was stored.  If its signatures no longer
        make K because the policy changed (a signer removed, K raised), that
        is the admin's doing: it is dropped and reported.  Anything else (a
        trusted signer's signature that does not verify, a damaged entry)
        means the state file was tampered with or broken, and since what it
        hid cannot be known, every package is blocked until it is mended.
        """
        try:
            raw = entry["doc"].encode()
            st = read_statement(raw, self.keysets, self.settings.threshold, entry.get("origin", "state"))
        except BelowThreshold as e:
            if self._forged(raw):
                self.invalid.append(f"stored halt {ident}: a signature by a trusted signer does not verify")
            else:
                self.dropped.append(f"stored halt {ident} no longer counts under this policy "
                                    f"(a signer was removed or K raised): {e}")
                log.warning("rebuildgate: %s", self.dropped[-1])
            return
        except Exception as e:  # noqa: BLE001 - a damaged entry: what it held cannot be known
            self.invalid.append(f"stored halt {ident}: {type(e).__name__}: {e}"[:300])
            return
        merge(self.statements, st)

    def _forged(self, raw: bytes) -> bool:
        """Whether a signature claims a key the policy trusts but does not verify with it."""
        try:
            _signed, sigs, data = parse_metablock(raw)
        except EvidenceError:
            return True
        for sig in sigs:
            for keyset in self.keysets:
                if keyset.by_keyid(sig.keyid) and keyset.rebuilder not in signers_of([sig], data, [keyset]):
                    return True
        return False

    def _unsaved(self, saved_state: dict[str, Any], saved_statements: dict[str, Statement], why: str) -> None:
        """Fall back to what the state file holds, keeping only what blocks more.

        A later run will not know what this run read, so nothing read now may
        relax anything (a lift, a newer feed version that the next run would
        then accept an older feed against); a new halt only blocks, so it
        applies in this run too.
        """
        fresh = self.statements
        self.state, self.statements = saved_state, dict(saved_statements)
        for ident, st in fresh.items():
            if st.action == "halt" and saved_statements.get(ident) is not st:
                # beside the saved one, not instead of it: a newer, narrower version must not relax it
                key = ident if ident not in self.statements else f"{ident} (read, unsaved v{st.version})"
                self.statements[key] = st
        self.unsaved = why
        self.status = [FeedStatus(f.url, False, f"read, but not used: {why}", f.version) if f.ok else f
                       for f in self.status]
        log.warning("rebuildgate: %s", why)

    def _refresh_feed(self, url: str) -> bool:
        from .errors import EvidenceMissing, FetchError

        now = self._now()
        feeds = self.state["feeds"]
        try:
            where = location(url)
            raw = self.transport.get(where, time.monotonic() + self.transport.settings.deadline, where,
                                     use_cache=False)
            feed = read_feed(raw, self.keysets, self.settings.feed_threshold, now)
            seen = feeds.get(url, {}).get("version", -1)
            if feed.version < seen:
                raise Rollback(f"feed version {feed.version} is older than version {seen} seen before")
        except EvidenceMissing:
            self.status.append(FeedStatus(url, False, f"no halt feed is published at {url} (not found)"))
            return False
        except (FetchError, EvidenceError) as e:
            self.status.append(FeedStatus(url, False, f"{e.kind}: {e}"))
            return False
        except Exception as e:  # noqa: BLE001 - whatever a feed does, it is a feed that failed
            self.status.append(FeedStatus(url, False, f"unreadable: {type(e).__name__}: {e}"))
            return False
        for doc in feed.statements:
            try:
                st = read_statement(doc, self.keysets, self.settings.threshold, url)
            except Exception as e:  # noqa: BLE001 - a statement that cannot be read does not count
                self.rejected.append(f"{url}: {e}")
                continue
            if merge(self.statements, st):
                self.state["statements"][st.id] = {"doc": doc.decode(), "origin": url}
        feeds[url] = {"version": feed.version, "refreshed": now.timestamp()}
        self.status.append(FeedStatus(url, True, f"version {feed.version}, signed by {', '.join(feed.signers)}",
                                      feed.version))
        return True

    def last_refresh(self) -> float:
        """When a feed was last read successfully (0: never; a time ahead of the clock is not believed)."""
        now = self._now().timestamp()
        times = [f.get("refreshed", 0) for f in self.state.get("feeds", {}).values()]
        return max((t for t in times if isinstance(t, (int, float)) and t <= now + CLOCK_SKEW), default=0)

    def stale_text(self) -> str | None:
        """The staleness in words (feeds not refreshed since …), or None while feeds are fresh."""
        stale = self.stale_for()
        if stale is None:
            return None
        last = self.last_refresh()
        when = format_time(_dt.datetime.fromtimestamp(last, _dt.timezone.utc))
        since = ("no halt feed has ever been read on this machine" if not last else
                 f"halt feeds not refreshed since {when} (max_age {self.settings.max_age}s)")
        return f"{STALE_ID}: {since}; stale = {self.settings.stale}"

    def stale_override(self) -> dict | None:
        """The admin's override of the present staleness, if one was given for it."""
        o = self.state.get("overrides", {}).get(STALE_ID)
        return o if isinstance(o, dict) and o.get("since") == self.last_refresh() else None

    def blocking(self) -> list[str]:
        """What stops installs right now besides the halts themselves (for ``halt status``)."""
        out = list(f"{INVALID_ID}: {text}" for text in self.invalid)
        if self.unsaved is not None and self.settings.stale == "block":
            out.append(f"{UNSAVED_ID}: {self.unsaved}; stale = block")
        elif self.stale_for() is not None and self.settings.stale == "block" and not self.stale_override():
            out.append(self.stale_text() or STALE_ID)
        return out

    def stale_for(self) -> float | None:
        """Seconds since the last successful refresh of any feed, if over max_age.

        A refresh time ahead of the clock (a run whose clock was wrong) is not
        believed: it counts as never refreshed, so one bad clock cannot turn
        the stale-feed protection off for later runs.
        """
        now = self._now().timestamp()
        times = [f.get("refreshed", 0) for f in self.state.get("feeds", {}).values()]
        last = max((t for t in times if isinstance(t, (int, float)) and t <= now + CLOCK_SKEW), default=0)
        age = now - last
        return age if age > self.settings.max_age else None

    # -- the hook the Verifier calls ------------------------------------------

    def __call__(self, artifact: Artifact) -> tuple[HaltNotice, ...]:
        self.refresh()
        found = notices(artifact, self.statements.values(), self.state.get("overrides", {}), self._now())
        if self.invalid:
            found += (HaltNotice(INVALID_ID, f"{INVALID_ID}: halt state {self.path} holds a statement that no longer "
                                 f"verifies ({self.invalid[0]}); what it hid cannot be known: mend or remove the file",
                                 ("rebuildgate",), kind="brake"),)
        if self.unsaved is not None:
            why = f"{UNSAVED_ID}: {self.unsaved}, so what the halt feeds said cannot be relied on"
            if self.settings.stale == "block":
                found += (HaltNotice(UNSAVED_ID, why + "; stale = block", ("policy",), kind="brake"),)
            else:
                log.warning("rebuildgate: %s; stale = warn", why)
        elif (text := self.stale_text()) is not None:
            if self.settings.stale == "block":
                o = self.stale_override()
                found += (HaltNotice(STALE_ID, text + ": the policy says block until a feed is read "
                                     "(rebuildgate halt refresh) or the staleness is overridden", ("policy",),
                                     describe_override(o) if o else None, kind="brake"),)
            else:
                log.warning("rebuildgate: %s: the policy says warn", text)
        return found

    # -- admin overrides -------------------------------------------------------

    def set_override(self, ident: str, reason: str, by: str, force: bool = False,
                     version: int | None = None) -> dict[str, Any]:
        """Record the admin's override of halt *ident* as it is now in force.

        The override names the halt's version and content digest, so that a
        re-issued halt is not silently covered.  ``halt-feeds-stale`` overrides
        the present staleness (until a feed is read again).  An id that is
        not in force is refused (a typo must not look like success) unless
        *force*, which needs the *version* to cover.
        """
        self.refresh()
        entry: dict[str, Any] = {"by": by, "at": format_time(self._now()), "reason": " ".join(reason.split())}
        if ident == STALE_ID:
            if self.stale_for() is None:
                raise HaltError("the halt feeds are not stale: there is nothing to override")
            entry["since"] = self.last_refresh()
        else:
            st = self.statements.get(ident)
            if st is not None and st.action == "halt" and not st.expired(self._now()):
                entry.update(version=st.version, digest=st.digest)
            elif not force:
                known = ", ".join(sorted(i for i, s in self.statements.items() if s.action == "halt")) or "none"
                raise HaltError(f"no halt {ident!r} is in force (halts known: {known}); check the id, or give "
                                "--force --version N to record an override for a halt not seen yet")
            elif version is None:
                raise HaltError("--force needs --version N: an override names the halt version it covers")
            else:
                entry["version"] = version
        with self._lock:
            self.state = self._load_state()
            self.state["overrides"][ident] = entry
            self._write_or_fail()
        return entry

    def override_report(self) -> list[str]:
        """Every recorded override and whether it still covers anything (``halt status``)."""
        out = []
        for ident, o in sorted(self.state.get("overrides", {}).items()):
            if not isinstance(o, dict):
                continue
            who = describe_override(o)
            if ident == STALE_ID:
                what = "applies to the present staleness" if self.stale_override() is o else \
                    "no longer matches (the feeds were read since)"
                out.append(f"override of {STALE_ID} by {who}: {what}")
                continue
            st = self.statements.get(ident)
            if st is None or st.action != "halt" or st.expired(self._now()):
                out.append(f"override of halt {ident} v{o.get('version', '?')} by {who}: DANGLING, "
                           "no such halt is in force")
            elif override_applies(o, st):
                out.append(f"override of halt {ident} v{st.version} by {who}: applies")
            else:
                out.append(f"override of halt {ident} v{o.get('version', '?')} by {who}: NO LONGER MATCHES "
                           f"(halt {ident} is now v{st.version}): the halt is in force")
        return out

    def clear_override(self, ident: str) -> bool:
        with self._lock:
            self.state = self._load_state()
            existed = self.state["overrides"].pop(ident, None) is not None
            self._write_or_fail()
            return existed

    def _write_or_fail(self) -> None:
        try:
            self._save_state()
        except OSError as e:
            raise HaltError(f"cannot write halt state {self.path}: {e.strerror or e} (run as root?)") from None


# --------------------------------------------------------------------------
# Signing tools for halt signers


def load_signer(key_path: Path | None = None, gpg_key: str | None = None, gnupghome: str | None = None) -> Any:
    """A securesystemslib signer from a private PEM file or a GnuPG key."""
    if gpg_key:
        from securesystemslib.signer import GPGSigner

        try:
            _, public = GPGSigner.import_(gpg_key.lower().replace(" ", ""), gnupghome)
        except Exception as e:  # noqa: BLE001
            raise HaltError(f"cannot use OpenPGP key {gpg_key}: {e}") from None
        return GPGSigner(public, gnupghome)
    assert key_path is not None
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner

    try:
        private = load_pem_private_key(key_path.read_bytes(), password=None)
        return CryptoSigner(private)
    except (OSError, ValueError, TypeError) as e:
        raise HaltError(f"cannot load private key {key_path}: {e}") from None


def sign_document(signed: dict, signer: Any, existing: list[dict] | None = None) -> bytes:
    """A signed document: *signed* plus the signatures so far and a new one."""
    from securesystemslib.formats import encode_canonical

    sig = signer.sign(encode_canonical(signed).encode("utf-8")).to_dict()
    signatures = [s for s in (existing or []) if s.get("keyid") != sig["keyid"]] + [sig]
    return json.dumps({"signed": signed, "signatures": signatures}, indent=1, sort_keys=True).encode() + b"\n"


def statement_payload(ident: str, action: str, version: int, reason: str, expires: _dt.datetime,
                      packages: Iterable[str] = (), versions: Iterable[str] = (),
                      repositories: Iterable[str] = (), everything: bool = False,
                      issued: _dt.datetime | None = None, sha256: Iterable[str] = ()) -> dict:
    payload: dict[str, Any] = {
        "_type": STATEMENT_TYPE, "id": ident, "action": action, "version": version, "reason": reason,
        "issued": format_time(issued or _dt.datetime.now(_dt.timezone.utc)), "expires": format_time(expires),
    }
    if everything:
        payload["all"] = True
    for key, values in (("packages", packages), ("versions", versions), ("repositories", repositories),
                        ("sha256", [d.lower() for d in sha256])):
        if values:
            payload[key] = list(values)
    return payload


def feed_payload(version: int, expires: _dt.datetime, statements: Iterable[bytes]) -> dict:
    docs = []
    for raw in statements:
        try:
            docs.append(json.loads(raw))
        except ValueError as e:
            raise HaltError(f"a statement is not JSON: {e}") from None
    return {"_type": FEED_TYPE, "version": version, "expires": format_time(expires), "statements": docs}
