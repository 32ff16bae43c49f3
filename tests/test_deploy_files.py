"""The deployment files (Dockerfile, deploy/kubernetes, docs/deployment.md) against the code.

They are not Python, so nothing else would notice when they drift: a setting renamed,
a probe's route moved, a command's option gone, the two pod templates apart.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from gateway_support import running, write_spec
from prodgate import spec as spec_module
from prodgate.cli import serve as serve_module
from prodgate.cli.main import cli
from prodgate.settings import TABLE, Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
STATEFULSET = KUBERNETES / "statefulset"
DOC = ROOT / "docs" / "deployment.md"

SETTINGS = {s.env: s for s in TABLE}
VARIABLE = re.compile(r"\bPRODGATE_[A-Z][A-Z0-9_]*")


# -- reading the files --------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, rest), continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        keyword, _, rest = whole.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def instruction(keyword: str) -> list[str]:
    return [rest for kw, rest in dockerfile() if kw == keyword]


def exec_form(keyword: str) -> list[str]:
    """The JSON array of the (last) CMD or ENTRYPOINT, as Docker reads it."""
    value: list[str] = json.loads(instruction(keyword)[-1])
    return value


@functools.cache
def _manifests() -> dict[Path, list[dict[str, Any]]]:
    found = {}
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        if path.name == "prodgate.yaml":
            continue
        found[path] = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return found


def manifests() -> dict[Path, list[dict[str, Any]]]:
    """Every YAML document under deploy/kubernetes but the spec, by file (a copy)."""
    return copy.deepcopy(_manifests())


def objects(kind: str) -> list[dict[str, Any]]:
    return [d for docs in manifests().values() for d in docs if d.get("kind") == kind]


def one(kind: str) -> dict[str, Any]:
    (found,) = objects(kind)
    return found


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    return c


def env_values(workload: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(workload).get("env", []) if "value" in e}


# -- settings ---------------------------------------------------------------------


def test_every_prodgate_variable_named_is_a_setting() -> None:
    files = [DOCKERFILE, DOC, *sorted(KUBERNETES.rglob("*.yaml"))]
    unknown = {
        (str(f.relative_to(ROOT)), name)
        for f in files
        for name in VARIABLE.findall(f.read_text())
        if name not in SETTINGS
    }
    assert not unknown, f"not settings (see prodgate settings): {sorted(unknown)}"


def test_values_given_to_settings_are_ones_they_accept() -> None:
    given: list[tuple[str, str]] = []
    for rest in instruction("ENV"):
        given += re.findall(r"(PRODGATE_[A-Z0-9_]+)=(\S+)", rest)
    for workload in objects("Deployment") + objects("StatefulSet"):
        given += env_values(workload).items()
    given += [(k, v) for k, v in one("Secret")["stringData"].items() if v]
    assert len(given) > 10
    for name, value in given:
        assert name in SETTINGS, name
        SETTINGS[name].convert(value)  # raises ValueError saying what is wrong


def test_the_secret_feeds_the_gateway_settings_by_their_names() -> None:
    secret = one("Secret")
    assert set(secret["stringData"]) <= set(SETTINGS)
    assert "PRODGATE_DATABASE_URL" in secret["stringData"]
    assert "PRODGATE_ADMIN_TOKEN" in secret["stringData"]
    for workload in objects("Deployment") + objects("StatefulSet"):
        refs = [e["secretRef"]["name"] for e in container(workload)["envFrom"]]
        assert refs == [secret["metadata"]["name"]]


# -- the manifests ------------------------------------------------------------------


def kustomization(folder: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((folder / "kustomization.yaml").read_text())
    return loaded


def test_manifests_parse_and_are_the_expected_kinds() -> None:
    kinds = {
        str(path.relative_to(KUBERNETES)): [d["kind"] for d in docs]
        for path, docs in manifests().items()
    }
    assert kinds == {
        "kustomization.yaml": ["Kustomization"],
        "base/kustomization.yaml": ["Kustomization"],
        "base/secret.yaml": ["Secret"],
        "base/deployment.yaml": ["Deployment"],
        "base/service.yaml": ["Service"],
        "base/hpa.yaml": ["HorizontalPodAutoscaler"],
        "base/pdb.yaml": ["PodDisruptionBudget"],
        "statefulset/kustomization.yaml": ["Kustomization"],
        "statefulset/statefulset.yaml": ["Service", "StatefulSet"],
    }
    assert one("HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2"


def test_each_kustomization_lists_files_that_exist_and_every_manifest_is_listed() -> None:
    for folder in (KUBERNETES, BASE, STATEFULSET):
        k = kustomization(folder)
        for entry in k["resources"]:
            assert (folder / entry).exists(), f"{folder}: {entry}"
        for generator in k.get("configMapGenerator", []):
            for file in generator["files"]:
                assert (folder / file).is_file()
    listed = set(kustomization(BASE)["resources"])
    assert listed == {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml", "prodgate.yaml"}
    # Both ways of running the gateway deploy the same image.
    assert kustomization(KUBERNETES)["images"] == kustomization(STATEFULSET)["images"]


def test_the_configmap_spec_is_a_valid_spec_and_mounted_where_prodgate_config_says() -> None:
    spec = spec_module.load(BASE / "prodgate.yaml")
    assert spec.services
    (generator,) = kustomization(BASE)["configMapGenerator"]
    for workload in objects("Deployment") + objects("StatefulSet"):
        pod = workload["spec"]["template"]["spec"]
        config = PurePosixPath(env_values(workload)["PRODGATE_CONFIG"])
        (volume,) = (v for v in pod["volumes"] if "configMap" in v)
        assert volume["configMap"]["name"] == generator["name"]
        (mount,) = (m for m in container(workload)["volumeMounts"] if m["name"] == volume["name"])
        assert PurePosixPath(mount["mountPath"]) == config.parent
        assert config.name in generator["files"]


def test_home_is_a_writable_volume_on_a_read_only_root() -> None:
    for workload in objects("Deployment") + objects("StatefulSet"):
        c = container(workload)
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert workload["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        home = env_values(workload)["PRODGATE_HOME"]
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert home in mounts
        assert not mounts[home].get("readOnly", False)


def test_the_objects_point_at_each_other() -> None:
    deployment, service, hpa, pdb = (
        one("Deployment"),
        next(s for s in objects("Service") if s["spec"].get("clusterIP") != "None"),
        one("HorizontalPodAutoscaler"),
        one("PodDisruptionBudget"),
    )
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    ports = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in ports
    assert deployment["spec"]["replicas"] == 3


def test_the_statefulset_runs_the_same_pod_as_the_deployment() -> None:
    deployment, statefulset = one("Deployment"), one("StatefulSet")
    d_pod = dict(deployment["spec"]["template"]["spec"])
    s_pod = dict(statefulset["spec"]["template"]["spec"])
    d_volumes = {v["name"]: v for v in d_pod.pop("volumes")}
    s_volumes = {v["name"]: v for v in s_pod.pop("volumes")}
    assert d_pod == s_pod
    assert deployment["spec"]["template"]["metadata"] == statefulset["spec"]["template"]["metadata"]
    claims = {t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]}
    assert claims == {"home"}
    assert "emptyDir" in d_volumes.pop("home")
    assert d_volumes == s_volumes
    headless = next(s for s in objects("Service") if s["spec"].get("clusterIP") == "None")
    assert statefulset["spec"]["serviceName"] == headless["metadata"]["name"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("folder", [KUBERNETES, STATEFULSET], ids=["deployment", "statefulset"])
def test_kustomize_builds(folder: Path) -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=30
    )
    assert built.returncode == 0, built.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(built.stdout))
    workload = "Deployment" if folder == KUBERNETES else "StatefulSet"
    assert workload in kinds
    assert "ConfigMap" in kinds
    assert ({"Deployment", "StatefulSet"} - {workload}).isdisjoint(kinds)


# -- probes and routes --------------------------------------------------------------


def probe_paths() -> dict[str, set[str]]:
    """Every HTTP path something probes, by who probes it."""
    paths: dict[str, set[str]] = {}
    for workload in objects("Deployment") + objects("StatefulSet"):
        c = container(workload)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            paths.setdefault(probe, set()).add(c[probe]["httpGet"]["path"])
    (check,) = instruction("HEALTHCHECK")
    paths["HEALTHCHECK"] = set(re.findall(r"'(/[a-z]+)'", check))
    return paths


def test_the_probes_ask_what_the_design_says() -> None:
    paths = probe_paths()
    assert paths["livenessProbe"] == paths["startupProbe"] == {"/healthz"}
    assert paths["readinessProbe"] == {"/readyz"}
    assert paths["HEALTHCHECK"] == {"/healthz"}


@pytest.mark.anyio
async def test_every_probed_path_is_a_route_the_gateway_serves(sqlite_settings: Settings) -> None:
    write_spec(sqlite_settings)
    async with running(sqlite_settings) as client:
        for who, paths in probe_paths().items():
            for path in paths:
                response = await client.get(path)
                assert response.status_code == 200, (who, path, response.text)


def test_the_ports_agree() -> None:
    (exposed,) = instruction("EXPOSE")
    for workload in objects("Deployment") + objects("StatefulSet"):
        ports = [p["containerPort"] for p in container(workload)["ports"]]
        assert ports == [int(exposed)]
        args = container(workload)["args"]
        assert args[args.index("--port") + 1] == exposed
    (check,) = instruction("HEALTHCHECK")
    assert f"'PRODGATE_PORT', '{exposed}'" in check


# -- the image ----------------------------------------------------------------------


def test_the_image_runs_the_prodgate_command() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert exec_form("ENTRYPOINT") == ["prodgate"]
    assert "prodgate" in scripts
    assert instruction("FROM")[0].startswith("${PYTHON_IMAGE}")
    assert any("PYTHON_IMAGE=python:3.11-slim" in a for a in instruction("ARG"))
    assert instruction("USER") == ["10001:10001"]


def command_lines() -> list[list[str]]:
    """The arguments prodgate is run with: the image's CMD and each workload's args."""
    lines = [exec_form("CMD")]
    lines += [container(w)["args"] for w in objects("Deployment") + objects("StatefulSet")]
    return lines


@pytest.mark.parametrize("args", command_lines(), ids=" ".join)
def test_the_command_is_a_real_prodgate_command(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args", command_lines(), ids=" ".join)
def test_the_command_serves_on_every_address(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsed for real, up to the point where the server would start."""
    seen: list[Settings] = []
    monkeypatch.setattr(
        serve_module, "run_server", lambda settings, spec, **kw: seen.append(settings)
    )
    spec = tmp_path / "prodgate.yaml"
    spec.write_text((BASE / "prodgate.yaml").read_text())
    env: dict[str, str | None] = dict.fromkeys(SETTINGS)
    env |= {"PRODGATE_HOME": str(tmp_path / "home"), "PRODGATE_CONFIG": str(spec)}
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert settings.host == "0.0.0.0"
    assert settings.port == 8000


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps *path* out of the build context (no ! rules here)."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatchcase(prefix.split("/")[-1], bare)
            ):
                return True
    return False


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(p.startswith("!") for p in patterns)
    copied = [
        source
        for rest in instruction("COPY")
        if not rest.startswith("--from")
        for source in rest.split()[:-1]
    ]
    assert copied, "the Dockerfile copies nothing from the context"
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not ignored(source, patterns), source
    for local in (".venv", ".git", ".prodgate", ".prodgate-demo", ".pytest_cache"):
        assert ignored(local, patterns), local
    assert ignored("src/prodgate/__pycache__/x.pyc", patterns)
    assert not ignored("src/prodgate/server/app.py", patterns)
