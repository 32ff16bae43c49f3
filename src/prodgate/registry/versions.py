"""Registering immutable model versions and reading them back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit import log
from prodgate.exceptions import ArtifactError, ProdgateError, UnknownVersionError, UsageError
from prodgate.identity.actor import Actor
from prodgate.registry import artifacts as artifact_store
from prodgate.registry import numbers, sources
from prodgate.registry import trust as trust_module
from prodgate.registry.fingerprint import data_fingerprint, sha256_path
from prodgate.runtime.base import FLAVORS, Trust

if TYPE_CHECKING:
    from prodgate.monitor.profiles import Progress
    from prodgate.runtime.base import Model
from prodgate.spec import ServiceSpec
from prodgate.store.engine import LOCK_REGISTRY, Store, now_us
from prodgate.store.tables import versions

MAX_VERSION = numbers.MAX_VERSION


@dataclass(frozen=True)
class Version:
    service: str
    number: int
    flavor: str
    sha256: str
    size: int
    artifact: str
    source: str
    #: What the registrant trusted: the artifact's code, or skops types by name.
    trusted: Trust
    data_fingerprint: dict[str, Any] | None
    note: str
    created_by: str
    created_at_us: int
    #: The person accountable when an agent registered it (its key's owner).
    owner: str | None = None

    @property
    def registrant(self) -> str:
        """The person answerable for the registration."""
        return self.owner or self.created_by

    @classmethod
    def from_row(cls, row: Any) -> Version:
        m = row._mapping
        fp = m["data_fingerprint"]
        types = m["trusted_types"]
        return cls(
            service=m["service"],
            number=int(m["number"]),
            flavor=m["flavor"],
            sha256=m["sha256"],
            size=int(m["size"]),
            artifact=m["artifact"],
            source=m["source"],
            trusted=Trust(bool(m["trusted"]), tuple(orjson.loads(types)) if types else ()),
            data_fingerprint=orjson.loads(fp) if fp else None,
            note=m["note"] or "",
            created_by=m["created_by"],
            created_at_us=int(m["created_at_us"]),
            owner=m["owner"],
        )

    def location(self, artifacts: Path) -> str:
        """Where the adapter loads it from: a stored path, or the callable's reference."""
        if self.flavor == "callable":
            return self.artifact
        return str(artifacts / self.artifact)

    def verified_location(self, artifacts: Path) -> str:
        """:meth:`location`, after checking it is still what was registered.

        A stored artifact must be present with its registered sha256; a callable's
        module source must hash as it did, since editing it would silently change what
        this version does. Raises :class:`ArtifactError` naming what changed. Loaders
        call :func:`prodgate.registry.artifacts.materialise`, which fetches a missing
        or changed copy from the store instead.
        """
        from prodgate.runtime import callable as callable_adapter

        location = self.location(artifacts)
        if self.flavor == "callable":
            sha, _ = callable_adapter.callable_fingerprint(location)
            what = f"the module of {location!r} was changed after registration"
        else:
            path = Path(location)
            if not path.exists():
                raise ArtifactError(f"the artifact is missing: {path}")
            sha, _ = sha256_path(path)
            what = "the artifact was changed after registration"
        if sha != self.sha256:
            raise ArtifactError(
                f"{what} (sha256 {sha[:12]}..., registered {self.sha256[:12]}...); "
                "register it as a new version"
            )
        return location

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "version": self.number,
            "flavor": self.flavor,
            "sha256": self.sha256,
            "size": self.size,
            "source": self.source,
            "trusted_pickle": self.trusted.pickle,
            "trusted_types": list(self.trusted.types),
            "data": self.data_fingerprint,
            "note": self.note,
            "created_by": self.created_by,
            "owner": self.owner,
            "created_at_us": self.created_at_us,
        }


def _check_model(
    service: ServiceSpec, location: str, flavor: str, trusted: Trust, path: str
) -> Model | None:
    """Load the model and run it on the example input of the rows it sees (the contract's
    fields and the features); ArtifactError if not.
    A prompt version is parsed and checked against its service instead (None)."""
    from prodgate.contract import Contract

    if (flavor == "prompt") != (service.kind == "llm"):
        raise ArtifactError(
            f"{path}: a service of kind llm takes a prompt version (.yaml)"
            if service.kind == "llm"
            else f"{path}: a prompt version needs a service of kind llm, not {service.kind}"
        )
    if flavor == "prompt":
        from prodgate.llm.prompt import check_prompt, load_prompt

        assert service.llm is not None
        check_prompt(
            load_prompt(location),
            path,
            providers=service.llm.providers,
            fields=service.feature_names,
            output_contract=service.output_contract,
            example=Contract(service.model_contract).example(),
        )
        return None
    from prodgate.runtime.base import ModelInfo
    from prodgate.runtime.loader import load_model

    info = ModelInfo(
        kind=service.kind,
        features=service.feature_names,
        labels=service.labels,
        trusted=trusted,
    )
    model = load_model(location, flavor, info)
    example = Contract(service.model_contract).example()
    try:
        model.predict([example])
    except ArtifactError:
        raise
    except Exception as exc:
        raise ArtifactError(
            f"{path}: the model failed on the contract's example input: {type(exc).__name__}: {exc}"
        ) from None
    return model


def _load(service: ServiceSpec, location: str, flavor: str, trusted: Trust) -> Model:
    from prodgate.runtime.base import ModelInfo
    from prodgate.runtime.loader import load_model

    info = ModelInfo(service.kind, service.feature_names, service.labels, trusted)
    return load_model(location, flavor, info)


def register(
    store: Store,
    service: ServiceSpec,
    path: str,
    *,
    actor: str,
    flavor: str | None = None,
    data: Path | None = None,
    note: str = "",
    trust_pickle: bool = False,
    trust_types: Sequence[str] = (),
    check: bool = True,
    progress: Progress | None = None,
) -> Version:
    """Store *path* as the next version of *service*; return it.

    *path* is a file, a folder, ``module:function``, or an MLflow URI
    (:mod:`~prodgate.registry.sources`). The artifact is hashed, copied read-only into
    HOME/artifacts and stored in the store with the version
    (:mod:`~prodgate.registry.artifacts`; both content addressed), so changing or
    moving the original changes nothing and replicas need no shared folder. What
    loading it needs trusted is decided and recorded
    (:mod:`~prodgate.registry.trust`): *trust_pickle* for pickle-based artifacts,
    *trust_types* for the types a skops file names outside the allow-list. With
    *check* the model is loaded and run on the contract's example input first, so a
    broken or mismatched artifact is refused at the door rather than at serving time.
    With *data*, the version's reference profile is computed from it (inputs, and the
    model's outputs on up to 100k of its rows: :func:`prodgate.monitor.profiles.compute`)
    and stored with the version, in the same transaction; *progress* hears how many
    rows the model has answered.
    """
    if flavor is not None and flavor not in FLAVORS:
        raise UsageError(f"unknown flavor {flavor!r}; known: {', '.join(FLAVORS)}")
    fingerprint = data_fingerprint(data) if data else None
    with sources.resolve(path, flavor) as src:
        return _register(
            store,
            service,
            src,
            path,
            actor=actor,
            flavor=flavor,
            fingerprint=fingerprint,
            note=note,
            trust_pickle=trust_pickle,
            trust_types=trust_types,
            check=check,
            data=data,
            progress=progress,
        )


def _register(
    store: Store,
    service: ServiceSpec,
    src: sources.Source,
    path: str,
    *,
    actor: str,
    flavor: str | None,
    fingerprint: dict[str, Any] | None,
    note: str,
    trust_pickle: bool,
    trust_types: Sequence[str],
    check: bool,
    data: Path | None,
    progress: Progress | None,
) -> Version:
    from prodgate.runtime import callable as callable_adapter
    from prodgate.runtime.loader import detect_flavor

    flavor = flavor or detect_flavor(src.path)
    artifacts = store.settings.artifacts_path
    cached: Path | None = None  # the local copy, stored with the version
    copied = False  # made by this call: removed if the model is refused
    if flavor == "callable":
        sha, size = callable_adapter.callable_fingerprint(src.path)
        stored = src.path
    else:
        local = Path(src.path)
        if not local.exists():
            raise UsageError(f"{path}: no such file or folder")
        sha, size = sha256_path(local)
        stored = f"{sha[:2]}/{sha}/{src.name or local.name}"
        cached = artifacts / stored
        copied = artifact_store.cache(local, cached, sha)

    location = stored if flavor == "callable" else str(artifacts / stored)
    try:
        # Decided on the stored copy: what is trusted is what was hashed.
        trusted = trust_module.decide(
            flavor, location, path, trust_pickle=trust_pickle, trust_types=trust_types
        )
        model = _check_model(service, location, flavor, trusted, path) if check else None
        profile = None
        if data is not None:
            from prodgate.monitor import profiles

            if model is None and flavor != "prompt":
                model = _load(service, location, flavor, trusted)
            predict = model.predict if model is not None else None
            profile = (profiles.compute(service, data, predict, progress=progress), data.name)
        return _insert(
            store,
            service,
            src,
            cached,
            actor=actor,
            flavor=flavor,
            sha=sha,
            size=size,
            stored=stored,
            trusted=trusted,
            fingerprint=fingerprint,
            note=note,
            profile=profile,
        )
    except ProdgateError as exc:
        if cached is not None and copied:  # a refused model leaves nothing behind
            artifact_store.discard_copy(cached, artifacts)
        if flavor != "callable":  # name the user's file, not the copy the check loaded
            exc.detail = exc.detail.replace(location, path)
            exc.args = (exc.detail,)
        raise


def _insert(
    store: Store,
    service: ServiceSpec,
    src: sources.Source,
    cached: Path | None,
    *,
    actor: str,
    flavor: str,
    sha: str,
    size: int,
    stored: str,
    trusted: Trust,
    fingerprint: dict[str, Any] | None,
    note: str,
    profile: tuple[dict[str, Any], str] | None = None,
) -> Version:
    """Store the bytes of *cached* (none for a callable) and the next version's row, in
    one transaction: a version is never without its artifact in the store (nor, when
    registered with data, without its reference *profile*: its JSON and source)."""
    with store.write() as conn:
        if cached is not None:
            artifact_store.put(store, conn, cached, sha)
        # Two registrations at once on PostgreSQL would both read the same maximum.
        store.lock(conn, LOCK_REGISTRY)
        number = (
            conn.execute(
                sa.select(sa.func.max(versions.c.number)).where(versions.c.service == service.name)
            ).scalar()
            or 0
        ) + 1
        row = {
            "service": service.name,
            "number": number,
            "flavor": flavor,
            "sha256": sha,
            "size": size,
            "artifact": stored,
            "source": src.source,
            "trusted": trusted.pickle,
            "trusted_types": orjson.dumps(list(trusted.types)).decode() if trusted.types else None,
            "data_fingerprint": orjson.dumps(fingerprint).decode() if fingerprint else None,
            "note": note,
            "created_by": actor,
            "owner": actor.origin.owner if isinstance(actor, Actor) else None,
            "created_at_us": now_us(),
        }
        conn.execute(versions.insert().values(**row))
        version = Version.from_row(
            conn.execute(
                sa.select(versions).where(
                    versions.c.service == service.name, versions.c.number == number
                )
            ).one()
        )
        log.append(
            store,
            conn,
            [
                log.action(
                    "register",
                    actor=actor,
                    service=service.name,
                    version=number,
                    flavor=flavor,
                    sha256=sha,
                    size=size,
                    source=src.source,
                    data=fingerprint,
                    note=note,
                    trusted_pickle=trusted.pickle,
                    trusted_types=list(trusted.types),
                    **({"profile": _profile_summary(profile[0])} if profile else {}),
                )
            ],
        )
        if profile is not None:  # recorded with the registration, just above
            from prodgate.monitor import profiles

            profiles.save(
                store,
                service.name,
                number,
                profile[0],
                source=profile[1],
                actor=actor,
                conn=conn,
                record=False,
            )
    return version


def _profile_summary(profile: dict[str, Any]) -> dict[str, Any]:
    return {
        "rows": profile.get("rows"),
        "columns": [c.get("name") for c in profile.get("columns") or ()],
        "outputs": [c.get("name") for c in profile.get("outputs") or ()],
    }


def list_versions(conn: Connection, service: str) -> list[Version]:
    rows = conn.execute(
        sa.select(versions).where(versions.c.service == service).order_by(versions.c.number)
    ).all()
    return [Version.from_row(r) for r in rows]


def get_version(conn: Connection, service: str, number: int) -> Version:
    row = conn.execute(
        sa.select(versions).where(versions.c.service == service, versions.c.number == number)
    ).first()
    if row is None:
        known = [v.number for v in list_versions(conn, service)]
        hint = f"registered: {', '.join(map(str, known))}" if known else "none registered yet"
        raise UnknownVersionError(f"{service} has no version {number} ({hint})")
    return Version.from_row(row)
