"""``prodgate.yaml``: its schema, loading, and errors that say ``file:line: field: what``.

A spec declares one or more services::

    services:
      claims-triage:
        owner: {name: Claims Operations, contact: claims-ops@example.com}
        kind: classifier
        labels: [routine, adjuster]
        contract:
          input: {type: object, properties: {...}, required: [...]}
        escalation: {confidence_below: 0.7}
        batching: {max_batch_size: 64, max_wait_ms: 2}

The document is checked against :data:`SPEC_SCHEMA` (a JSON Schema, compiled once),
then each contract is checked to be a valid JSON Schema itself. Every error is mapped
back to the line of the YAML node it concerns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

from prodgate.exceptions import SpecError
from prodgate.spec import features as features_module
from prodgate.spec import guard as guard_module
from prodgate.spec import monitor as monitor_module
from prodgate.spec import policy as policy_module
from prodgate.spec import review as review_module
from prodgate.spec.llm import (
    Breaker,
    LlmService,
    ModelRef,
    Price,
    Provider,
    Retry,
    Timeouts,
    check_model,
)
from prodgate.spec.schema import JSON_TYPES, SPEC_SCHEMA
from prodgate.spec.service import Owner, ServiceSpec, Spec

_SPEC_VALIDATOR = jsonschema_rs.validator_for(SPEC_SCHEMA)


def _line_map(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            out[child] = key.start_mark.line + 1
            _line_map(value, child, out)
            out[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*path, str(i)), out)


def _line_of(lines: dict[tuple[str, ...], int], path: tuple[str, ...]) -> int:
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) if path else "(top)"


def _problem(file: Path, lines: dict[tuple[str, ...], int], path: tuple[str, ...], msg: str) -> str:
    return f"{file}:{_line_of(lines, path)}: {_dotted(path)}: {msg}"


def _friendly(err: Any) -> str:
    """jsonschema-rs messages name the whole instance; keep them short and plain."""
    message: str = err.message
    kind = type(err.kind).__name__ if hasattr(err, "kind") else ""
    if kind.endswith("AdditionalProperties"):
        unexpected = getattr(err.kind, "unexpected", None)
        if unexpected:
            return "unknown field(s): " + ", ".join(sorted(unexpected))
    if kind.endswith("Required"):
        prop = getattr(err.kind, "property", None)
        if prop is not None:
            return f"missing required field {prop!r}"
    if len(message) > 200:
        message = message[:197] + "..."
    return message


def _error_path(err: Any, data: Any) -> tuple[str, ...]:
    """The path of the node an error is about: for an unknown or badly named key, the key."""
    path = tuple(map(str, err.instance_path))
    kind = type(err.kind).__name__
    if kind == "AdditionalProperties" and err.kind.unexpected:
        return (*path, str(sorted(err.kind.unexpected)[0]))
    if kind == "PropertyNames":
        node = data
        for part in err.instance_path:
            node = node[part]
        for key in node if isinstance(node, dict) else ():
            if f'"{key}"' in err.message:
                return (*path, str(key))
    return path


def normalize_contract(schema: Any) -> Any:
    """Turn OpenAPI-style ``nullable: true`` into a JSON Schema type union with null."""
    if isinstance(schema, list):
        return [normalize_contract(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: normalize_contract(v) for k, v in schema.items() if k != "nullable"}
    if schema.get("nullable") is True:
        t = out.get("type")
        if isinstance(t, str) and t != "null":
            out["type"] = [t, "null"]
        elif isinstance(t, list) and "null" not in t:
            out["type"] = [*t, "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


def _check_contract(contract: Any) -> tuple[tuple[str, ...], str] | None:
    """What is wrong with a contract, and where inside it; None when it is fine."""
    if contract.get("type") != "object" or not isinstance(contract.get("properties"), dict):
        return (), "the input contract must be an object schema with properties"
    for key, prop in contract["properties"].items():
        where = ("properties", str(key))
        if not isinstance(prop, dict):
            return where, "must be a schema object"
        t = prop.get("type")
        for one in t if isinstance(t, list) else [t]:
            if one is not None and one not in JSON_TYPES:
                return (
                    *where,
                    "type",
                ), f"unknown type {one!r}; use one of {', '.join(JSON_TYPES)}"
        pattern = prop.get("pattern")
        if pattern is not None and not _is_regex(pattern):
            return (*where, "pattern"), (
                f"bad pattern {pattern!r}: not a regular expression the gateway can compile"
            )
    try:
        jsonschema_rs.meta.validate(contract)
        # Compile it as the gateway will: what the meta-schema allows may still be
        # refused by the validator (a keyword's value it cannot build).
        jsonschema_rs.validator_for(contract)
    except jsonschema_rs.ValidationError as exc:
        return tuple(map(str, exc.instance_path)), f"not a valid JSON Schema: {_friendly(exc)}"
    except Exception as exc:  # the meta-validator's own refusal
        return (), f"not a valid JSON Schema: {exc}"
    return None


def _is_regex(pattern: Any) -> bool:
    """Whether the contract's validator (jsonschema-rs, not Python's re) compiles it."""
    try:
        jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
    except (jsonschema_rs.ValidationError, ValueError, TypeError):
        return False
    return True


def parse(text: str, file: Path) -> Spec:
    """Parse spec *text* (read from *file*, for messages). Raises :class:`SpecError`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise SpecError(f"{file}:{line}: (yaml): {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{file}:1: (yaml): {exc}") from None
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _line_map(node, (), lines)
    if not isinstance(data, dict):
        raise SpecError(f"{file}:1: (top): the spec must be a mapping with a 'services' key")

    located = sorted(
        ((_error_path(e, data), _friendly(e)) for e in _SPEC_VALIDATOR.iter_errors(data)),
        key=lambda pm: (_line_of(lines, pm[0]), len(pm[0])),
    )
    problems = [_problem(file, lines, path, msg) for path, msg in located]

    services: dict[str, ServiceSpec] = {}
    providers: dict[str, Provider] = {}
    views: dict[str, features_module.FeatureView] = {}
    if not problems:
        try:
            views = features_module.build_views(data.get("features"))
        except features_module.FeatureProblem as exc:
            problems.append(_problem(file, lines, exc.path, exc.message))
    if not problems:
        providers = {n: _provider(n, raw) for n, raw in data.get("providers", {}).items()}
        for name, raw in data["services"].items():
            base = ("services", name)
            llm, where, why = _llm(raw, providers)
            if why:
                problems.append(_problem(file, lines, (*base, *where), why))
                continue
            contract = normalize_contract(raw["contract"]["input"])
            bad = _check_contract(contract)
            if bad:
                where, msg = bad
                problems.append(_problem(file, lines, (*base, "contract", "input", *where), msg))
                continue
            labels = raw.get("labels")
            if raw["kind"] == "regressor" and labels:
                problems.append(
                    _problem(file, lines, (*base, "labels"), "a regressor has no labels")
                )
                continue
            if raw["kind"] == "regressor" and raw.get("escalation"):
                problems.append(
                    _problem(
                        file,
                        lines,
                        (*base, "escalation"),
                        "escalation by confidence needs a classifier",
                    )
                )
                continue
            labels_t = tuple(str(x) for x in labels) if labels else None
            try:
                if raw.get("features") and raw["kind"] == "llm":
                    raise features_module.FeatureProblem(
                        ("features",), "feature views feed models; a service of kind llm has none"
                    )
                features = features_module.build_service(
                    raw.get("features"), views, list(contract["properties"])
                )
            except features_module.FeatureProblem as exc:
                problems.append(_problem(file, lines, (*base, *exc.path), exc.message))
                continue
            fields = [*contract["properties"], *features.names]
            try:
                policy = policy_module.build(raw, raw["kind"], labels_t, fields)
            except policy_module.PolicyProblem as exc:
                problems.append(_problem(file, lines, (*base, *exc.path), exc.message))
                continue
            guard, where, why = guard_module.build(
                raw.get("guard"), raw["kind"], guard_module.text_fields(contract)
            )
            if why:
                problems.append(_problem(file, lines, (*base, *where), why))
                continue
            try:
                monitor = monitor_module.build(
                    raw.get("monitor"),
                    raw["kind"],
                    fields,
                    [c.name for c in policy.cohorts],
                    business=policy.business is not None,
                    views=[u.view.name for u in features.uses],
                )
            except monitor_module.MonitorProblem as exc:
                problems.append(_problem(file, lines, (*base, *exc.path), exc.message))
                continue
            try:
                review = review_module.build(raw.get("review"), raw["kind"], fields, policy.cohorts)
            except review_module.ReviewProblem as exc:
                problems.append(_problem(file, lines, (*base, *exc.path), exc.message))
                continue
            monitor = monitor_module.with_review(monitor, review.on)
            owner = raw["owner"]
            batching = raw.get("batching", {})
            services[name] = ServiceSpec(
                name=name,
                owner=Owner(owner["name"], owner["contact"]),
                kind=raw["kind"],
                contract=contract,
                labels=labels_t,
                escalation_below=raw.get("escalation", {}).get("confidence_below"),
                max_batch_size=batching.get("max_batch_size"),
                max_wait_ms=batching.get("max_wait_ms"),
                public=bool(raw.get("public", False)),
                limits=dict(raw.get("limits", {})),
                description=raw.get("description", ""),
                output_contract=raw["contract"].get("output"),
                policy=policy,
                llm=llm,
                guard=guard,
                monitor=monitor,
                features=features,
                review=review,
            )
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise SpecError(problems[0] + more, problems=problems)
    # Relative paths in the spec (feature sources, ...) are relative to the file itself:
    # a spec reached through a symbolic link (the demo links HOME/prodgate.yaml to the
    # example's) reads them beside its target.
    real = file.resolve() if file.is_symlink() else file
    return Spec(path=real, services=services, providers=providers, views=views)


def _provider(name: str, raw: dict[str, Any]) -> Provider:
    return Provider(
        name=name,
        base_url=raw["base_url"].rstrip("/"),
        api_key_env=raw.get("api_key_env"),
        models={m: Price(**price) for m, price in raw["models"].items()},
        breaker=Breaker(**raw.get("breaker", {})),
        max_connections=raw.get("max_connections", 256),
    )


def _llm(
    raw: dict[str, Any], providers: dict[str, Provider]
) -> tuple[LlmService | None, tuple[str, ...], str]:
    """A service's ``llm`` section, or where and what is wrong with it."""
    section = raw.get("llm")
    if raw["kind"] != "llm":
        if section is not None:
            return None, ("llm",), "an llm section needs kind: llm"
        return None, (), ""
    section = section or {}
    if raw.get("escalation") or raw.get("batching"):
        which = "escalation" if raw.get("escalation") else "batching"
        return None, (which,), f"a service of kind llm has no {which}"
    refs: list[ModelRef] = []
    named = [("fallbacks", str(i), t) for i, t in enumerate(section.get("fallbacks", []))]
    if "judge" in section:
        named.append(("judge", "", section["judge"]))
    for key, index, text in named:
        ref = ModelRef.parse(text)
        why = check_model(ref, providers)
        if why:
            return None, tuple(p for p in ("llm", key, index) if p), why
        refs.append(ref)
    retry = Retry(**section.get("retry", {}))
    if retry.max_backoff_ms < retry.backoff_ms:
        return None, ("llm", "retry"), "max_backoff_ms must be at least backoff_ms"
    judge = ModelRef.parse(section["judge"]) if "judge" in section else None
    return (
        LlmService(
            fallbacks=tuple(ModelRef.parse(t) for t in section.get("fallbacks", [])),
            retry=retry,
            timeouts=Timeouts(**section.get("timeouts", {})),
            max_tokens=section.get("max_tokens", 1024),
            budgets=dict(section.get("budgets", {})),
            judge=judge,
            providers=providers,
        ),
        (),
        "",
    )


def load(path: str | Path) -> Spec:
    """Load and check the spec at *path*."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            f"{file}: no such spec file (run 'prodgate init' to write one, or pass --config)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{file}: cannot read the spec: {exc}") from None
    return parse(text, file)
