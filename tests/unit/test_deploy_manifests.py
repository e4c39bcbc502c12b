"""deploy/kubernetes: every object of the base and the gpu overlay is valid for the API server.

Built-in kinds are checked against the Kubernetes OpenAPI schemas of KUBERNETES_VERSION
(kubernetes-validate, strict: an unknown field is an error, as `kubectl apply` makes it); the KEDA
ScaledObject and the CloudNativePG Cluster against the schemas of their CRDs, vendored in
tests/fixtures/crds with their release in the file name and made as strict. Then the wiring that
no schema sees: names that refer to each other, the settings the pods are given, the jobs stream
that KEDA watches, the GPU worker's placement, the NATS chart values.

The overlays are rendered with kustomize (or `kubectl kustomize`) when one is on PATH; otherwise
with `render_kustomization` below, which implements the few kustomization fields these files use
(and refuses any other); where both exist, a test checks they agree.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from lms.broker import CONSUMER_NAME
from lms.cli import build_parser
from lms.integrations.whisper.decoding import best, load_table, row_for
from lms.settings import Settings, load_settings, specs

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
CRDS = ROOT / "tests" / "fixtures" / "crds"
OVERLAYS = {"base": DEPLOY / "base", "gpu": DEPLOY / "overlays" / "gpu"}
# A release every managed Kubernetes offers; kubernetes-validate ships schemas up to 1.37.
KUBERNETES_VERSION = "1.34.0"
CUSTOM_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-v2.20.2-scaledobjects.keda.sh.yaml",
    ("postgresql.cnpg.io/v1", "Cluster"): "cloudnative-pg-v1.30.0-clusters.postgresql.cnpg.io.yaml",
}
NATS_CHART_VALUES = CRDS / "nats-helm-chart-2.14.2-values.yaml"
# Secrets the pods read that these manifests do not create: the operator's (README) and the one
# CloudNativePG makes for the database owner.
EXTERNAL_SECRETS = {"lms-secrets", "lms-db-app"}
# Variables in the pods that are not lms settings: pieces of the database URLs, the Hugging Face
# cache folder.
NOT_SETTINGS = {"DB_USER", "DB_PASSWORD", "HF_HOME"}
REPLICA_URLS = "LMS_DATABASE_REPLICA_URLS"

Doc = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# rendering


_SUPPORTED_FIELDS = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "images"}
_CLUSTER_SCOPED = {"Namespace"}


def _env_file(path: Path) -> dict[str, str]:
    data: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: {line!r} is not KEY=VALUE")
        data[key] = value
    return data


def _pod_specs(doc: Doc) -> Iterator[Doc]:
    spec = doc.get("spec") or {}
    if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}:
        yield spec["template"]["spec"]
    elif doc["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]
    elif doc["kind"] == "Pod":
        yield spec


def _containers(doc: Doc) -> Iterator[Doc]:
    for pod in _pod_specs(doc):
        yield from pod.get("initContainers", [])
        yield from pod.get("containers", [])


def render_kustomization(directory: Path) -> list[Doc]:
    """What `kustomize build directory` gives for the fields these kustomizations use, without
    the hash suffix of generated ConfigMaps."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - _SUPPORTED_FIELDS
    if unsupported:
        raise NotImplementedError(
            f"{directory}: render_kustomization does not implement {sorted(unsupported)};"
            " install kustomize or extend it"
        )
    docs: list[Doc] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            docs += render_kustomization(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for generator in kustomization.get("configMapGenerator", []):
        data: dict[str, str] = {}
        for env in generator.get("envs", []):
            data.update(_env_file(directory / env))
        for literal in generator.get("literals", []):
            key, _, value = literal.partition("=")
            data[key] = value
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": data,
            }
        )
    namespace = kustomization.get("namespace")
    if namespace:
        for doc in docs:
            if doc["kind"] not in _CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = namespace
    for image in kustomization.get("images", []):
        for doc in docs:
            for container in _containers(doc):
                name, _, _ = container["image"].partition(":")
                if name == image["name"]:
                    new_name = image.get("newName", name)
                    container["image"] = f"{new_name}:{image['newTag']}"
    return docs


def _kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def _kustomize_build(directory: Path) -> list[Doc] | None:
    command = _kustomize_command()
    if command is None:
        return None
    out = subprocess.run(
        [*command, str(directory)], capture_output=True, text=True, timeout=120, check=True
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


@cache
def rendered(overlay: str) -> tuple[Doc, ...]:
    docs = _kustomize_build(OVERLAYS[overlay])
    if docs is None:
        docs = render_kustomization(OVERLAYS[overlay])
    return tuple(docs)


def _id(doc: Doc) -> str:
    name = doc["metadata"]["name"]
    if doc["kind"] == "ConfigMap":
        name = re.sub(
            r"-[a-z0-9]{10}$", "", name
        )  # kustomize's hash suffix: one id with or without
    return f"{doc['kind']}/{name}"


def _all_docs() -> list[tuple[str, Doc]]:
    return [(overlay, doc) for overlay in OVERLAYS for doc in rendered(overlay)]


def _one(overlay: str, kind: str, name: str) -> Doc:
    found = [d for d in rendered(overlay) if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{overlay}: expected one {kind}/{name}, found {len(found)}"
    return found[0]


# ---------------------------------------------------------------------------------------------
# schemas


def _strict(schema: Any) -> Any:
    """A CRD's structural schema as the API server applies it with strict field validation: an
    object with declared properties takes no other field (unless the CRD says to keep unknown
    fields), and `nullable` admits null."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    crd = yaml.safe_load((CRDS / CUSTOM_SCHEMAS[(api_version, kind)]).read_text())
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group
    assert crd["spec"]["names"]["kind"] == kind
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert served["served"], f"{api_version} {kind} is not served by this CRD"
    schema = _strict(served["schema"]["openAPIV3Schema"])
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft7Validator
    )
    validator_class.check_schema(schema)
    return validator_class(schema)


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def schema_errors(doc: Doc) -> list[str]:
    """Why the API server would refuse `doc`, or nothing."""
    key = (doc["apiVersion"], doc["kind"])
    if key in CUSTOM_SCHEMAS:
        errors = [
            f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in crd_validator(*key).iter_errors(doc)
        ]
        name = doc.get("metadata", {}).get("name", "")
        if not _DNS_LABEL.match(name) or len(name) > 63:
            errors.append(f"metadata.name: {name!r} is not a DNS label")
        return errors
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {doc['apiVersion']} {doc['kind']}: vendor its CRD"]
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(map(str, exc.path)) or "(root)"
        return [f"{path}: {exc.message}"]
    return []


@pytest.mark.parametrize(
    ("overlay", "doc"), [pytest.param(o, d, id=f"{o}:{_id(d)}") for o, d in _all_docs()]
)
def test_every_object_matches_its_schema(overlay: str, doc: Doc) -> None:
    assert schema_errors(doc) == []


def test_a_wrong_manifest_is_caught() -> None:
    # The checks above can fail: a misspelt field, a wrong type, an unknown trigger field.
    deployment = copy.deepcopy(_one("base", "Deployment", "lms-api"))
    deployment["spec"]["replica"] = 2
    assert schema_errors(deployment)
    deployment = copy.deepcopy(_one("base", "Deployment", "lms-api"))
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    assert schema_errors(deployment)
    scaled = copy.deepcopy(_one("base", "ScaledObject", "lms-worker"))
    scaled["spec"]["minReplicasCount"] = 1
    assert any("minReplicasCount" in e for e in schema_errors(scaled))
    scaled = copy.deepcopy(_one("base", "ScaledObject", "lms-worker"))
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 2  # metadata values are strings
    assert schema_errors(scaled)
    cluster = copy.deepcopy(_one("base", "Cluster", "lms-db"))
    cluster["spec"]["instances"] = "three"
    assert schema_errors(cluster)
    cluster = copy.deepcopy(_one("base", "Cluster", "lms-db"))
    cluster["spec"]["storage"]["sise"] = "1Gi"
    assert schema_errors(cluster)
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert schema_errors(unknown) == ["no schema for example.com/v1 Widget: vendor its CRD"]


def test_the_vendored_crds_say_their_release() -> None:
    for file in CUSTOM_SCHEMAS.values():
        assert re.search(r"-v\d+\.\d+\.\d+-", file), file
        assert (CRDS / file).is_file()


# ---------------------------------------------------------------------------------------------
# rendering: nothing left out, the fallback faithful


def _listed_files(directory: Path) -> set[Path]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    files = {directory / "kustomization.yaml"}
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        files |= _listed_files(path) if path.is_dir() else {path}
    for generator in kustomization.get("configMapGenerator", []):
        files |= {(directory / env).resolve() for env in generator.get("envs", [])}
    return files


def test_every_file_is_part_of_an_overlay() -> None:
    # A manifest no kustomization lists is neither applied nor validated.
    listed = set().union(*(_listed_files(d) for d in OVERLAYS.values()))
    on_disk = {
        p.resolve()
        for p in DEPLOY.rglob("*")
        if p.suffix in {".yaml", ".yml", ".env"} and p.name != "nats-values.yaml"
    }
    assert on_disk - listed == set()


def _without_hashes(docs: list[Doc]) -> list[Doc]:
    """kustomize's output with the generated ConfigMaps' hash suffixes taken off."""
    text = yaml.safe_dump_all(docs)
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            hashed = doc["metadata"]["name"]
            text = text.replace(hashed, re.sub(r"-[a-z0-9]{10}$", "", hashed))
    return [d for d in yaml.safe_load_all(text) if d is not None]


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_the_fallback_renders_what_kustomize_renders(overlay: str) -> None:
    built = _kustomize_build(OVERLAYS[overlay])
    if built is None:
        pytest.skip("neither kustomize nor kubectl on PATH")

    def key(doc: Doc) -> str:
        return _id(doc)

    ours = sorted(render_kustomization(OVERLAYS[overlay]), key=key)
    theirs = sorted(_without_hashes(built), key=key)
    assert [key(d) for d in ours] == [key(d) for d in theirs]
    for mine, kustomize in zip(ours, theirs, strict=True):
        assert mine == kustomize, key(mine)


def test_the_fallback_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\npatches: []\n")
    with pytest.raises(NotImplementedError, match="patches"):
        render_kustomization(tmp_path)


# ---------------------------------------------------------------------------------------------
# wiring


def _by_kind(overlay: str, kind: str) -> list[Doc]:
    return [d for d in rendered(overlay) if d["kind"] == kind]


def _config(overlay: str) -> dict[str, str]:
    (config,) = [d for d in _by_kind(overlay, "ConfigMap") if "lms-config" in d["metadata"]["name"]]
    data: dict[str, str] = config["data"]
    return data


def _env(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def _pod_template(doc: Doc) -> Doc:
    template: Doc = doc["spec"]["template"]
    return template


def test_references_resolve() -> None:
    for overlay in OVERLAYS:
        docs = rendered(overlay)
        names = {(d["kind"], d["metadata"]["name"]) for d in docs}
        for doc in docs:
            for container in _containers(doc):
                for source in container.get("envFrom", []):
                    if "configMapRef" in source:
                        assert ("ConfigMap", source["configMapRef"]["name"]) in names
                    if "secretRef" in source:
                        assert source["secretRef"]["name"] in EXTERNAL_SECRETS
                for var in container.get("env", []):
                    ref = var.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["name"] in EXTERNAL_SECRETS, (_id(doc), var["name"])
            for pod in _pod_specs(doc):
                account = pod.get("serviceAccountName")
                if account:
                    assert ("ServiceAccount", account) in names
        for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
            for scaler in _by_kind(overlay, kind):
                target = scaler["spec"]["scaleTargetRef"]["name"]
                assert ("Deployment", target) in names, _id(scaler)
        for selecting in _by_kind(overlay, "Service") + _by_kind(overlay, "PodDisruptionBudget"):
            spec = selecting["spec"]
            selector = spec["selector"].get("matchLabels", spec["selector"])
            assert any(
                selector.items() <= _pod_template(d)["metadata"]["labels"].items()
                for d in _by_kind(overlay, "Deployment")
            ), _id(selecting)


def test_every_variable_is_an_lms_setting() -> None:
    # A misspelt variable is silently ignored by the service: catch it here.
    known = {spec.env for _, spec in specs()} | NOT_SETTINGS
    for overlay in OVERLAYS:
        assert set(_config(overlay)) <= known
        for doc in rendered(overlay):
            for container in _containers(doc):
                assert set(_env(container)) <= known, _id(doc)


def test_the_configuration_is_accepted_by_lms() -> None:
    config = _config("gpu")
    settings = load_settings(config)
    assert settings.environment == "production"
    assert settings.jobs_replicas == 3
    assert settings.host == "0.0.0.0"  # noqa: S104 - the pod's address, reached through the Service
    nodes = [urlsplit(u) for u in (settings.nats_url or "").split(",")]
    assert [n.hostname for n in nodes] == [
        f"nats-{i}.nats-headless.nats.svc.cluster.local" for i in range(3)
    ]
    assert {n.port for n in nodes} == {4222}


def test_the_database_urls_point_at_the_cnpg_services() -> None:
    cluster = _one("gpu", "Cluster", "lms-db")
    assert cluster["spec"]["instances"] == 3
    name, database = cluster["metadata"]["name"], cluster["spec"]["bootstrap"]["initdb"]["database"]
    api = _one("gpu", "Deployment", "lms-api")
    (container,) = _pod_template(api)["spec"]["containers"]
    env = _env(container)
    for var, service in (("DATABASE_URL", f"{name}-rw"), (REPLICA_URLS, f"{name}-ro")):
        url = urlsplit(env[var]["value"])
        assert url.scheme == "postgresql"
        assert (url.hostname, url.port, url.path) == (service, 5432, f"/{database}")
        assert url.username == "$(DB_USER)"
    # The credentials come from the Secret CloudNativePG makes for the database owner, and are
    # defined before the URLs that use them (Kubernetes expands only earlier variables).
    names = list(env)
    for part in ("DB_USER", "DB_PASSWORD"):
        assert env[part]["valueFrom"]["secretKeyRef"]["name"] == f"{name}-app"
        assert names.index(part) < names.index("DATABASE_URL")
    # As lms reads them once Kubernetes has put the credentials in.
    values = {k: v["value"] for k, v in env.items() if "value" in v}
    expanded = {
        k: v.replace("$(DB_USER)", "lms").replace("$(DB_PASSWORD)", "secret")
        for k, v in values.items()
    }
    settings = load_settings(expanded)
    assert settings.database_url == f"postgresql://lms:secret@{name}-rw:5432/{database}"
    assert settings.database_replica_urls == (f"postgresql://lms:secret@{name}-ro:5432/{database}",)
    # Everything else that writes goes to the primary only.
    for doc in _by_kind("gpu", "Deployment") + _by_kind("gpu", "Job"):
        for c in _containers(doc):
            url = _env(c).get("DATABASE_URL")
            if url:
                assert urlsplit(url["value"]).hostname == f"{name}-rw", _id(doc)


def test_the_database_user_may_see_whether_a_replica_streams() -> None:
    """lms lets a replica serve only while it streams, which it reads from
    pg_stat_wal_receiver.status: hidden from the database owner (the user of both URLs) unless
    granted pg_read_all_stats, and every replica would then be skipped."""
    cluster = _one("gpu", "Cluster", "lms-db")
    initdb = cluster["spec"]["bootstrap"]["initdb"]
    assert f"GRANT pg_read_all_stats TO {initdb['owner']}" in initdb["postInitSQL"]


def test_the_api_probes_resources_and_autoscaling() -> None:
    api = _one("base", "Deployment", "lms-api")
    (container,) = _pod_template(api)["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port_names = {p["name"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["port"] in port_names
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    hpa = _one("base", "HorizontalPodAutoscaler", "lms-api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert 1 < hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    pdb = _one("base", "PodDisruptionBudget", "lms-api")
    assert pdb["apiVersion"] == "policy/v1"


def _command(container: Doc) -> list[str]:
    command: list[str] = container.get("command", []) + container.get("args", [])
    return command


def test_the_commands_are_lms_commands() -> None:
    parser = build_parser()
    for overlay in OVERLAYS:
        for doc in rendered(overlay):
            for container in _containers(doc):
                command = _command(container)
                if command[:2] == ["sh", "-c"]:
                    assert "lms migrate --check" in command[2]
                    continue
                assert command[0] == "lms", _id(doc)
                parser.parse_args(command[1:])  # exits (fails the test) on a wrong flag


def test_migrations_run_before_the_new_pods() -> None:
    job = _one("base", "Job", "lms-migrate")
    (container,) = _pod_template(job)["spec"]["containers"]
    assert _command(container) == ["lms", "migrate"]
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "Sync"
    for deployment in _by_kind("gpu", "Deployment"):
        (init,) = _pod_template(deployment)["spec"]["initContainers"]
        assert init["command"][-1].startswith("until lms migrate --check;"), _id(deployment)
    # Argo CD syncs the database (and its app Secret) before the migrate Job.
    cluster = _one("base", "Cluster", "lms-db")
    assert int(cluster["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) < 0


def _trigger(scaled: Doc) -> dict[str, str]:
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    metadata: dict[str, str] = trigger["metadata"]
    return metadata


def test_keda_watches_the_jobs_consumer() -> None:
    settings = Settings()
    nats_values = yaml.safe_load((DEPLOY / "nats-values.yaml").read_text())
    for scaled in _by_kind("gpu", "ScaledObject"):
        trigger = _trigger(scaled)
        assert trigger["stream"] == settings.jobs_stream
        assert trigger["consumer"] == CONSUMER_NAME
        assert trigger["account"] == "$G"  # the default account, which lms connects to
        host, _, port = trigger["natsServerMonitoringEndpoint"].partition(":")
        # The headless Service, through which KEDA reaches each node to find the leader.
        assert host == "nats-headless.nats.svc.cluster.local"
        assert int(port) == nats_values["config"]["monitor"]["port"]
        assert int(trigger["lagThreshold"]) >= 1
    assert _one("gpu", "ScaledObject", "lms-worker")["spec"]["minReplicaCount"] >= 1
    assert _one("gpu", "ScaledObject", "lms-worker-gpu")["spec"]["minReplicaCount"] == 0


# The arithmetic in worker-gpu-scaledobject.yaml: a worker is given the jobs it finishes in the
# time a new GPU worker takes to help, at the throughput the decoding table measured.
TYPICAL_LESSON_SECONDS = 600
NEW_GPU_WORKER_SECONDS = 120


def _jobs_finished_meanwhile(device: str) -> int:
    table = load_table()
    row = row_for(device, "default")  # type: ignore[arg-type]
    throughput = best(row.measurements, table.tolerance_wer).audio_seconds_per_second
    return max(1, round(throughput * NEW_GPU_WORKER_SECONDS / TYPICAL_LESSON_SECONDS))


def test_the_gpu_lag_thresholds_follow_the_measured_throughput() -> None:
    trigger = _trigger(_one("gpu", "ScaledObject", "lms-worker-gpu"))
    assert int(trigger["lagThreshold"]) == _jobs_finished_meanwhile("cuda")
    assert int(trigger["activationLagThreshold"]) == _jobs_finished_meanwhile("cpu")
    # The worker runs the table's number of jobs at once: no --concurrency overrides it.
    (container,) = _pod_template(_one("gpu", "Deployment", "lms-worker-gpu"))["spec"]["containers"]
    assert "--concurrency" not in _command(container)


def test_the_gpu_worker_runs_on_a_gpu_with_the_gpu_image() -> None:
    assert not [d for d in rendered("base") if "gpu" in d["metadata"]["name"]]
    worker = _one("gpu", "Deployment", "lms-worker-gpu")
    pod = _pod_template(worker)["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert _env(container)["LMS_WHISPER_DEVICE"]["value"] == "cuda"
    assert _command(container)[_command(container).index("--device") + 1] == "cuda"
    assert container["image"].endswith("-gpu")
    cpu_images = {
        c["image"] for d in rendered("base") for c in _containers(d) if d["kind"] != "Cluster"
    }
    assert container["image"] not in cpu_images
    cpu_worker = _one("gpu", "Deployment", "lms-worker")
    (cpu_container,) = _pod_template(cpu_worker)["spec"]["containers"]
    assert "nvidia.com/gpu" not in cpu_container["resources"]["limits"]


def test_the_gpu_worker_keeps_compiled_kernels_and_is_ready_only_when_warm() -> None:
    # CUDA_CACHE_PATH comes from the gpu image (tests/unit/test_compose.py checks its ENV).
    dockerfile = (ROOT / "Dockerfile").read_text()
    cache_path = re.search(r"CUDA_CACHE_PATH=(\S+)", dockerfile)
    assert cache_path
    worker = _one("gpu", "Deployment", "lms-worker-gpu")
    pod = _pod_template(worker)["spec"]
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[cache_path.group(1)])
    claim = _one("gpu", "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    # Pods on many nodes share it; it holds the driver's whole cache (CUDA_CACHE_MAXSIZE, 4 GiB).
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    size = claim["spec"]["resources"]["requests"]["storage"]
    assert size.endswith("Gi") and int(size[:-2]) > 4
    # Writable by the non-root worker through the pod's fsGroup (a claim, not a hostPath).
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]
    assert not any("hostPath" in v for v in pod["volumes"])
    # Ready only once warm: the metrics port opens after the warm-up (test_worker_startup.py).
    assert _config("gpu")["LMS_WORKER_METRICS_PORT"] == "9100"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == 9100
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["tcpSocket"]["port"] == "metrics", probe
    # The base's CPU workers compile nothing and mount no cache.
    cpu = _pod_template(_one("base", "Deployment", "lms-worker"))["spec"]
    assert not any(v.get("persistentVolumeClaim") for v in cpu["volumes"])


def _paths(values: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(values, dict):
        for key, value in values.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))


def test_the_nats_values_fit_the_chart() -> None:
    ours = yaml.safe_load((DEPLOY / "nats-values.yaml").read_text())
    chart = yaml.safe_load(NATS_CHART_VALUES.read_text())
    chart_paths = set(_paths(chart))
    # Free-form maps of the chart: their keys are ours to choose.
    free = {("container", "resources"), ("podTemplate", "topologySpreadConstraints")}
    for path in _paths(ours):
        if any(path[: len(f)] == f and len(path) > len(f) for f in free):
            continue
        assert path in chart_paths, ".".join(path)
    assert ours["config"]["cluster"]["enabled"] is True
    assert ours["config"]["cluster"]["replicas"] == 3
    assert ours["config"]["jetstream"]["enabled"] is True
    assert ours["config"]["monitor"]["enabled"] is True
    # Its three nodes are the ones NATS_URL lists and LMS_JOBS_REPLICAS replicates over.
    assert len(_config("base")["NATS_URL"].split(",")) == ours["config"]["cluster"]["replicas"]
    assert int(_config("base")["LMS_JOBS_REPLICAS"]) == ours["config"]["cluster"]["replicas"]
