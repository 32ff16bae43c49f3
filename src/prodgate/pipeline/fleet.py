"""The fleet: every deployed version loaded and batched, and each service's split.

The gateway reads routing state from here on every request without touching the
store. A refresh (on start, then whenever the store's generation moves) reads the
deployments, loads versions that are newly needed (production, canary, shadow),
swaps in the new state in one assignment, and closes batchers no longer needed once
their queued work is done, so requests in flight finish on the version they started
with and none fails during a rollback.

A version that cannot be loaded here (its artifact missing or changed) does not
take the service down: the production version already loaded keeps answering, and
says so in its answers and audit records, while ``load_errors`` (and so /readyz)
reports the problem. A shadow version that cannot load takes no traffic, so it does
not make the gateway unready: it is reported apart (``shadow_errors``, the detail of
/readyz, and the ``prodgate_version_load_failed`` gauge). The error is logged once,
and every later refresh tries the load again until it succeeds.

Batchers of versions no longer needed are closed once their queued work is done, and
:meth:`Fleet.close` waits for those still closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prodgate.exceptions import ArtifactError, ProdgateError
from prodgate.pipeline.batcher import Batcher, Prepare
from prodgate.pipeline.metrics import Metrics
from prodgate.registry import artifacts
from prodgate.registry.approvals import approved_versions
from prodgate.registry.versions import Version, get_version
from prodgate.rollout.router import Split
from prodgate.rollout.split import Deployment, all_deployments
from prodgate.runtime.base import ModelInfo
from prodgate.runtime.loader import load_model
from prodgate.settings import Settings
from prodgate.spec import ServiceSpec, Spec
from prodgate.store.engine import Store

if TYPE_CHECKING:
    from prodgate.llm.endpoint import Endpoint
    from prodgate.llm.route import Route
    from prodgate.spec.llm import LlmService, ModelRef

    #: Builds the route of a prompt version: its models in order, the service's settings.
    RouteMaker = Callable[[Sequence[ModelRef], LlmService], Route]

logger = logging.getLogger("prodgate.fleet")


@dataclass
class Live:
    """A version loaded and ready to take traffic: a model behind its micro-batcher,
    or (services of kind ``llm``) a prompt version behind its route."""

    spec: ServiceSpec
    version: Version
    batcher: Batcher | None = None
    endpoint: Endpoint | None = None

    def start(self) -> None:
        if self.batcher is not None:
            self.batcher.start()

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()


@dataclass(frozen=True)
class ServiceState:
    """What a request to one service needs: the split and the loaded versions."""

    split: Split | None = None
    versions: dict[int, Live] = field(default_factory=dict)
    disabled: bool = False
    disabled_reason: str = ""
    error: str | None = None  # why a version that takes traffic could not be loaded
    shadow_error: str | None = None  # why the shadow version could not be loaded

    @property
    def production(self) -> Live | None:
        if self.split is None or self.split.production is None:
            return None
        return self.versions.get(self.split.production)

    @property
    def shadow(self) -> Live | None:
        if self.split is None or self.split.shadow is None:
            return None
        return self.versions.get(self.split.shadow)


def _needed(dep: Deployment | None) -> list[int]:
    if dep is None:
        return []
    wanted = [dep.production_version, dep.canary_version, dep.shadow_version]
    return sorted({v for v in wanted if v is not None})


class Fleet:
    def __init__(
        self,
        settings: Settings,
        spec: Spec,
        store: Store,
        metrics: Metrics,
        make_route: RouteMaker | None = None,
        prepare: Mapping[str, Prepare] | None = None,
    ) -> None:
        self.settings = settings
        self.make_route = make_route
        #: Each feature-reading service's enrich step, run by its batchers on each batch.
        self.prepare = dict(prepare or {})
        self.spec = spec
        self.store = store
        self.metrics = metrics
        self.services: dict[str, ServiceState] = {name: ServiceState() for name in spec.services}
        self.generation = -1
        self._lock = asyncio.Lock()
        self._reported: dict[tuple[str, int], str] = {}  # load errors already logged
        self._retiring: set[asyncio.Task[None]] = set()
        self._pinned: dict[str, list[int]] = {}  # approved LLM versions, by service

    @property
    def load_errors(self) -> dict[str, str]:
        """Services whose production or canary version could not be loaded here."""
        return {n: s.error for n, s in self.services.items() if s.error}

    @property
    def shadow_errors(self) -> dict[str, str]:
        """Services whose shadow version could not be loaded (they still serve)."""
        return {n: s.shadow_error for n, s in self.services.items() if s.shadow_error}

    async def refresh(self) -> bool:
        """Reload state if the store's generation moved, or retry versions that failed
        to load; True when a version was loaded or retired (the heap changed)."""
        async with self._lock:
            generation = await asyncio.to_thread(self.store.generation)
            if generation == self.generation and not (self.load_errors or self.shadow_errors):
                return False
            deployments, versions = await asyncio.to_thread(self._read)
            changed = False
            for name, service in self.spec.services.items():
                changed |= await self._refresh_service(service, deployments.get(name), versions)
            self.generation = generation
            return changed

    def _read(self) -> tuple[dict[str, Deployment], dict[tuple[str, int], Version]]:
        with self.store.read() as conn:
            deployments = all_deployments(conn)
            self._pinned = {
                name: approved_versions(conn, service)
                for name, service in self.spec.services.items()
                if service.kind == "llm"
            }
            versions = {
                (name, n): get_version(conn, name, n)
                for name in self.spec.services
                for n in self._wanted(name, deployments.get(name))
            }
        return deployments, versions

    def _wanted(self, name: str, dep: Deployment | None) -> list[int]:
        """The versions to load: those of the split, and for an LLM service also every
        approved one (callers may pin one: ``service@version``; a prompt is cheap)."""
        return sorted({*_needed(dep), *self._pinned.get(name, ())})

    async def _refresh_service(
        self,
        service: ServiceSpec,
        dep: Deployment | None,
        versions: dict[tuple[str, int], Version],
    ) -> bool:
        """Load and retire *service*'s versions as *dep* says; whether any were."""
        old = self.services[service.name]
        loaded = dict(old.versions)
        errors: list[str] = []
        shadow_error: str | None = None
        serving = set() if dep is None else {dep.production_version, dep.canary_version}
        failed = self.metrics.load_failed
        split_versions = set(_needed(dep))
        for number in self._wanted(service.name, dep):
            if number not in split_versions:  # an approved LLM version callers may pin
                if number not in loaded:
                    with contextlib.suppress(ProdgateError):
                        live = await asyncio.to_thread(
                            self._load, service, versions[(service.name, number)]
                        )
                        loaded[number] = live
                continue
            role = "shadow" if number not in serving else "serving"
            if number in loaded:
                continue
            version = versions[(service.name, number)]
            try:
                live = await asyncio.to_thread(self._load, service, version)
            except ProdgateError as exc:
                other = "serving" if role == "shadow" else "shadow"
                with contextlib.suppress(KeyError):  # its role may have changed
                    failed.remove(service.name, str(number), other)
                failed.labels(service.name, str(number), role).set(1)
                if role == "shadow":
                    shadow_error = f"shadow version {number}: {exc.detail}"
                else:
                    errors.append(f"version {number}: {exc.detail}")
                if self._reported.get((service.name, number)) != exc.detail:
                    self._reported[(service.name, number)] = exc.detail
                    logger.error("%s v%s cannot be loaded: %s", service.name, number, exc.detail)
                continue
            self._forget(service.name, number)
            live.start()
            loaded[number] = live
            logger.info("%s: loaded version %s (%s)", service.name, number, version.flavor)
        keep = set(self._wanted(service.name, dep))
        for key in [k for k in self._reported if k[0] == service.name and k[1] not in keep]:
            self._forget(*key)  # no longer wanted: log it again if it comes back
        split = None
        if dep is not None:
            canary = dep.canary_version if dep.canary_version in loaded else None
            shadow = dep.shadow_version if dep.shadow_version in loaded else None
            production = dep.production_version if dep.production_version in loaded else None
            before = old.split.production if old.split else None
            wanted = dep.production_version
            if production is None and wanted is not None and before in loaded:
                # The new production version does not load here: the one that answered
                # so far goes on answering (and is named in answers and records) until
                # it does, rather than every request failing with 503.
                production = before
                keep.add(before)
                errors.append(f"version {before} serves until version {wanted} loads")
            split = Split(
                production=production,
                canary=canary,
                canary_weight=dep.canary_weight if canary is not None else 0.0,
                shadow=shadow,
            )
        state = ServiceState(
            split=split,
            versions={n: live for n, live in loaded.items() if n in keep},
            disabled=bool(dep and dep.disabled),
            disabled_reason=(dep.disabled_reason or "") if dep else "",
            error="; ".join(errors) or None,
            shadow_error=shadow_error,
        )
        self.services[service.name] = state  # one assignment: requests see old or new
        retired = [(n, live) for n, live in loaded.items() if n not in keep]
        for number, live in retired:
            logger.info("%s: retiring version %s", service.name, number)
            task = asyncio.get_running_loop().create_task(live.close())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        return bool(retired) or loaded.keys() != old.versions.keys()

    def _forget(self, service: str, number: int) -> None:
        """*number* loaded, or is no longer wanted: its load error is gone."""
        self._reported.pop((service, number), None)
        for role in ("serving", "shadow"):
            with contextlib.suppress(KeyError):
                self.metrics.load_failed.remove(service, str(number), role)

    def _load(self, service: ServiceSpec, version: Version) -> Live:
        location = artifacts.materialise(self.store, version)
        if service.kind == "llm":
            return self._load_prompt(service, version, location)
        info = ModelInfo(
            kind=service.kind,
            features=service.feature_names,
            labels=service.labels,
            trusted=version.trusted,
        )
        model = load_model(location, version.flavor, info)
        label = str(version.number)
        batcher = Batcher(
            model,
            max_batch_size=service.max_batch_size or self.settings.max_batch_size,
            max_wait_ms=(
                service.max_wait_ms
                if service.max_wait_ms is not None
                else self.settings.max_wait_ms
            ),
            max_queue=self.settings.max_queue,
            on_batch=self.metrics.batch_size.labels(service.name, label).observe,
            on_depth=self.metrics.queue_depth.labels(service.name, label).set,
            name=f"{service.name}-v{version.number}",
            prepare=self.prepare.get(service.name),
        )
        return Live(service, version, batcher)

    def _load_prompt(self, service: ServiceSpec, version: Version, location: str) -> Live:
        from prodgate.llm.endpoint import Endpoint
        from prodgate.llm.prompt import load_prompt

        if version.flavor != "prompt" or service.llm is None or self.make_route is None:
            raise ArtifactError(f"version {version.number} is not a prompt version")
        prompt = load_prompt(location)
        targets = prompt.targets(service.llm)
        route = self.make_route(targets, service.llm)
        endpoint = Endpoint.build(prompt, route, targets, service.llm, service.output_contract)
        return Live(service, version, endpoint=endpoint)

    async def close(self) -> None:
        """Finish the queued work of every batcher, retiring ones included, then stop."""
        for state in self.services.values():
            for live in state.versions.values():
                await live.close()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
