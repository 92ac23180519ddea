"""The checks behind scripts/validate-deploy.sh, which installs the tools and runs this with them.

Each check prints one line, `ok` or `FAIL` with the file and the problem; the run exits non-zero when
any failed. Checks are plain functions over parsed files, so a new rule is a few lines here.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

# Kubernetes versions every manifest must be valid for: the oldest we support, and the newest whose
# schemas kubernetes-validate ships.
K8S_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]

KUSTOMIZATIONS = ["base", "overlays/production", "migrate", "monitoring"]

# Custom resources: their schemas are ours (deploy/kubernetes/schemas/), for the fields we use.
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda.sh-v1alpha1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor-monitoring.coreos.com-v1.json",
}

# Components that must have a PodDisruptionBudget (the acme manager runs alone; losing it for a
# moment delays a certificate order, nothing more).
NEED_PDB = {"gateway", "worker", "edge", "dashboard"}

# Sidecars that have no health endpoint of their own (see deploy/kubernetes/base/edge.yaml).
NO_PROBES = {"cert-sync"}

# Secret keys the manifests may read from kiln-secrets (deploy/README.md, "Secrets").
SECRET_KEYS = {"KILN_REDIS_URL", "KILN_DATABASE_URL", "KILN_SESSION_SECRET", "KILN_ACME_SECRET"}

# What nginx-prometheus-exporter serves for stub_status (it is not Kiln's to document).
NGINX_EXPORTER_METRICS = {
    "nginx_up", "nginx_connections_active", "nginx_connections_accepted", "nginx_connections_handled",
    "nginx_connections_reading", "nginx_connections_writing", "nginx_connections_waiting",
    "nginx_http_requests_total",
}

# Services in docker-compose.yml that need no health check: one-shot jobs and helpers whose image
# has no way to run one (each is explained in docker-compose.yml).
COMPOSE_NO_HEALTHCHECK = {"migrate", "edge-certs", "edge-exporter"}


class Checker:
    def __init__(self, args):
        self.root = Path(args.root).resolve()
        self.kubectl = args.kubectl
        self.promtool = args.promtool
        self.modern = args.modern_kustomize.split() if args.modern_kustomize else []
        self.bin = Path(args.bin)
        self.compose_cmd = args.compose.split() if args.compose else []
        self.passed = 0
        self.failed = 0
        self.metric_uses = []  # (where, metric name)

    def rel(self, path):
        return os.path.relpath(path, self.root)

    def ok(self, what):
        self.passed += 1
        print(f"  ok    {what}")

    def fail(self, what, why):
        self.failed += 1
        why = str(why).strip().replace("\n", "\n        ")
        print(f"  FAIL  {what}: {why}")

    def check(self, what, problems):
        problems = [p for p in problems if p]
        if problems:
            for problem in problems:
                self.fail(what, problem)
        else:
            self.ok(what)

    def run(self, cmd, **kwargs):
        return subprocess.run(cmd, capture_output=True, text=True, **kwargs)

    # --- documented names -------------------------------------------------------------------

    def documented_metrics(self):
        text = (self.root / "docs/metrics.md").read_text()
        names = set()
        for cell in re.findall(r"^\|\s*(`[^|]+`)\s*\|", text, re.M):
            names.update(re.findall(r"`([a-z_:][a-z0-9_:]*)`", cell))
        histograms = set(re.findall(r"^\|\s*`([a-z0-9_]+)`\s*\|\s*histogram", text, re.M))
        for h in histograms:
            names.update({f"{h}_bucket", f"{h}_sum", f"{h}_count"})
        return names

    def documented_variables(self):
        names = set()
        for doc in ["README.md", "docs/metrics.md", ".env.example", "nginx/README.md", "nginx/kiln.conf.template"]:
            names.update(re.findall(r"\bKILN_[A-Z0-9_]+\b", (self.root / doc).read_text()))
        return names

    # --- Kubernetes ------------------------------------------------------------------------

    def render(self, cmd, directory):
        result = self.run(cmd + [str(directory)])
        if result.returncode != 0:
            return None, result.stderr.strip()
        return [d for d in yaml.safe_load_all(result.stdout) if d], None

    def kubernetes(self):
        print("Kubernetes (deploy/kubernetes)")
        kdir = self.root / "deploy/kubernetes"
        schemas = {k: json.loads((kdir / "schemas" / f).read_text()) for k, f in CUSTOM_KINDS.items()}
        rendered = {}
        for name in KUSTOMIZATIONS:
            objects, error = self.render([self.kubectl, "kustomize"], kdir / name)
            if objects is None:
                self.fail(f"kustomize {name}", error)
                continue
            self.ok(f"kustomize {name}: {len(objects)} objects")
            rendered[name] = objects
            if not self.modern and name == KUSTOMIZATIONS[0]:
                print("  skip  a second kustomize (none on PATH): Debian's kubectl alone renders the kustomizations")
            if self.modern:
                other, error = self.render(self.modern, kdir / name)
                key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
                if other is None:
                    self.fail(f"{' '.join(self.modern)} {name}", error)
                else:
                    same = sorted(objects, key=key) == sorted(other, key=key)
                    self.check(f"{' '.join(self.modern)} {name} renders the same objects",
                               [None if same else "the two kustomize versions disagree"])
            for obj in objects:
                self.validate_object(name, obj, schemas)
        for name, objects in rendered.items():
            self.kiln_rules(name, objects)
        return rendered

    def validate_object(self, source, obj, schemas):
        what = f"{source}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        key = (obj.get("apiVersion"), obj.get("kind"))
        problems = []
        if key in schemas:
            try:
                jsonschema.validate(obj, schemas[key])
            except jsonschema.ValidationError as e:
                problems.append(f"{'.'.join(map(str, e.absolute_path))}: {e.message}")
        else:
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.SchemaNotFoundError:
                    problems.append(f"no schema for {key[0]} {key[1]} in Kubernetes {version} (a custom "
                                    "resource needs a schema in deploy/kubernetes/schemas/)")
                    break
                except kubernetes_validate.ValidationError as e:
                    path = ".".join(map(str, e.path))
                    problems.append(f"Kubernetes {version}: {path}: {e.message}")
        self.check(what, problems)

    def kiln_rules(self, source, objects):
        by_kind = {}
        for obj in objects:
            by_kind.setdefault(obj["kind"], []).append(obj)
        deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
        known_vars = self.documented_variables()

        def pod_specs():
            for kind in ("Deployment", "Job"):
                for obj in by_kind.get(kind, []):
                    yield obj, obj["spec"]["template"]

        for obj, template in pod_specs():
            what = f"{source}: {obj['kind']}/{obj['metadata']['name']} rules"
            spec, problems = template["spec"], []
            psc = spec.get("securityContext", {})
            if psc.get("runAsNonRoot") is not True:
                problems.append("the pod must set securityContext.runAsNonRoot: true")
            if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append("the pod must use the RuntimeDefault seccomp profile")
            if spec.get("automountServiceAccountToken") is not False:
                problems.append("no Kiln pod talks to the API server: set automountServiceAccountToken: false")
            for i, c in enumerate(spec["containers"]):
                n = c["name"]
                res = c.get("resources", {})
                for part in ("requests", "limits"):
                    for r in ("cpu", "memory"):
                        if r not in res.get(part, {}):
                            problems.append(f"container {n} has no {part}.{r}")
                sc = c.get("securityContext", {})
                if sc.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"container {n} must set allowPrivilegeEscalation: false")
                if sc.get("readOnlyRootFilesystem") is not True:
                    problems.append(f"container {n} must set readOnlyRootFilesystem: true")
                if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                    problems.append(f"container {n} must drop ALL capabilities")
                ports = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
                if obj["kind"] == "Deployment" and n not in NO_PROBES:
                    wanted = ["livenessProbe", "readinessProbe"] if i == 0 else ["livenessProbe"]
                    for probe in wanted:
                        if probe not in c:
                            problems.append(f"container {n} has no {probe}")
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    handler = c.get(probe, {})
                    port = (handler.get("httpGet") or handler.get("tcpSocket") or {}).get("port")
                    if port is not None and port not in ports:
                        problems.append(f"container {n}'s {probe} uses port {port!r}, which it does not declare")
                for env in c.get("env", []):
                    if env["name"].startswith("KILN_") and env["name"] not in known_vars:
                        problems.append(f"container {n} sets {env['name']}, which no document describes")
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref and (ref["name"] != "kiln-secrets" or ref["key"] not in SECRET_KEYS):
                        problems.append(f"container {n} reads secret {ref['name']}/{ref['key']}, not one of kiln-secrets' keys")
                    if "value" in env and re.search(r"SECRET|PASSWORD|DATABASE_URL|REDIS_URL", env["name"]):
                        problems.append(f"container {n} has {env['name']} inline: it belongs in the Secret")
            annotations = template["metadata"].get("annotations", {})
            if annotations.get("prometheus.io/scrape") == "true":
                port = int(annotations.get("prometheus.io/port", "0"))
                named = {p["containerPort"]: p.get("name") for c in spec["containers"] for p in c.get("ports", [])}
                if named.get(port) not in ("admin", "metrics"):
                    problems.append(f"prometheus.io/port {port} is not a container port named admin or metrics "
                                    "(deploy/prometheus/prometheus.yml keeps only those)")
            for volume in spec.get("volumes", []):
                if "emptyDir" in volume and "sizeLimit" not in volume["emptyDir"]:
                    problems.append(f"emptyDir {volume['name']} has no sizeLimit")
            self.check(what, problems)

        for d in deployments.values():
            what = f"{source}: Deployment/{d['metadata']['name']} selector"
            labels = d["spec"]["template"]["metadata"].get("labels", {})
            sel = d["spec"]["selector"].get("matchLabels", {})
            self.check(what, [None if sel and all(labels.get(k) == v for k, v in sel.items())
                              else "the selector does not match the pod template's labels"])

        def selected(selector):
            return [d for d in deployments.values()
                    if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())]

        for svc in by_kind.get("Service", []):
            what = f"{source}: Service/{svc['metadata']['name']} selects pods that have its ports"
            pods = selected(svc["spec"].get("selector", {}))
            problems = [] if pods else ["it selects no Deployment's pods"]
            for d in pods:
                names = {p.get("name") for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
                numbers = {p["containerPort"] for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
                for p in svc["spec"]["ports"]:
                    target = p.get("targetPort", p["port"])
                    if target not in names and target not in numbers:
                        problems.append(f"targetPort {target!r} is not a port of {d['metadata']['name']}")
            self.check(what, problems)

        covered = set()
        for pdb in by_kind.get("PodDisruptionBudget", []):
            pods = selected(pdb["spec"]["selector"].get("matchLabels", {}))
            covered.update(d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") for d in pods)
            self.check(f"{source}: PodDisruptionBudget/{pdb['metadata']['name']} selects pods",
                       [None if pods else "it selects no Deployment's pods"])
        present = {d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") for d in deployments.values()}
        if present & NEED_PDB:
            self.check(f"{source}: PodDisruptionBudgets for {', '.join(sorted(present & NEED_PDB))}",
                       [f"{c} has no PodDisruptionBudget" for c in sorted((present & NEED_PDB) - covered)])

        for scaler in by_kind.get("HorizontalPodAutoscaler", []) + by_kind.get("ScaledObject", []):
            target = scaler["spec"]["scaleTargetRef"]["name"]
            what = f"{source}: {scaler['kind']}/{scaler['metadata']['name']} target"
            d = deployments.get(target)
            self.check(what, [
                None if d else f"no Deployment {target}",
                "the Deployment sets replicas, which every apply would reset" if d and "replicas" in d["spec"] else None,
            ])
            for trigger in scaler["spec"].get("triggers", []):
                query = trigger.get("metadata", {}).get("query")
                if query:
                    self.metric_uses.append((f"{source}: ScaledObject/{scaler['metadata']['name']}", query))

        self.check(f"{source}: no Secret objects (secrets are created in the cluster, never committed)",
                   [f"Secret/{s['metadata']['name']} is in the manifests" for s in by_kind.get("Secret", [])])

    # --- compose ------------------------------------------------------------------------------

    def compose(self):
        print("docker-compose.yml")
        path = self.root / "docker-compose.yml"
        result = self.run([str(self.bin / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)])
        self.check("compose specification (check-jsonschema vendor.compose-spec)",
                   [None if result.returncode == 0 else (result.stdout + result.stderr).strip()])
        compose = yaml.safe_load(path.read_text())
        services = compose["services"]
        problems = []
        for name, svc in services.items():
            hc = svc.get("healthcheck")
            if name not in COMPOSE_NO_HEALTHCHECK and not (hc and hc.get("test") and not hc.get("disable")):
                problems.append(f"service {name} has no health check")
            for dep, cond in (svc.get("depends_on") or {}).items():
                if dep not in services:
                    problems.append(f"service {name} depends on {dep}, which does not exist")
                    continue
                condition = cond.get("condition") if isinstance(cond, dict) else None
                if condition == "service_healthy" and not services[dep].get("healthcheck", {}).get("test"):
                    problems.append(f"service {name} waits for {dep} to be healthy, but {dep} has no health check")
            for var in re.findall(r"\bKILN_[A-Z0-9_]+\b", json.dumps(svc.get("environment", {}))):
                if var not in self.documented_variables():
                    problems.append(f"service {name} sets {var}, which no document describes")
        dashboard_deps = services.get("dashboard", {}).get("depends_on", {})
        if dashboard_deps.get("migrate", {}).get("condition") != "service_completed_successfully":
            problems.append("the dashboard must wait for the migrate service to complete successfully")
        self.check("health checks, dependencies and variables", problems)

        # Docker Compose's own reading, with every profile and the required variables set:
        # interpolation, references between services, options it does not know.
        env = dict(os.environ, KILN_SESSION_SECRET="x" * 48, KILN_ACME_SECRET="x" * 48)
        result = self.run(self.compose_cmd + ["-f", str(path), "--profile", "tls", "--profile", "observability",
                                          "config", "--quiet"], env=env)
        self.check(f"{' '.join(Path(self.compose_cmd[0]).name.split() + self.compose_cmd[1:])} config (every profile)",
                   [None if result.returncode == 0 else (result.stdout + result.stderr).strip()])

    # --- workflows ----------------------------------------------------------------------------

    def workflows(self):
        print("GitHub workflows (.github/workflows)")
        files = sorted((self.root / ".github/workflows").glob("*.yml"))
        result = self.run([str(self.bin / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows"]
                          + [str(f) for f in files])
        self.check(f"{len(files)} workflows against the GitHub workflow schema",
                   [None if result.returncode == 0 and files else (result.stdout + result.stderr).strip() or "no workflows"])

    # --- Prometheus ---------------------------------------------------------------------------

    def prometheus(self):
        print("Prometheus (deploy/prometheus)")
        pdir = self.root / "deploy/prometheus"
        result = self.run([self.promtool, "check", "rules", str(pdir / "alerts.yml")])
        self.check("promtool check rules alerts.yml", [None if result.returncode == 0 else result.stdout + result.stderr])
        result = self.run([self.promtool, "test", "rules", "alerts.test.yml"], cwd=pdir)
        self.check("promtool test rules alerts.test.yml", [None if result.returncode == 0 else result.stdout + result.stderr])
        for name in ("prometheus.compose.yml", "prometheus.yml"):
            result = self.run([self.promtool, "check", "config", str(pdir / name)])
            if result.returncode != 0 and "kubernetes_sd_configs not found" in result.stdout + result.stderr:
                # Debian builds Prometheus without Kubernetes discovery. Check the rest of the file
                # with the discovery swapped for a static target, and the discovery's own fields here.
                config = yaml.safe_load((pdir / name).read_text())
                problems = []
                for job in config.get("scrape_configs", []):
                    for sd in job.pop("kubernetes_sd_configs", []) or []:
                        if sd.get("role") not in {"node", "service", "pod", "endpoints", "endpointslice", "ingress"}:
                            problems.append(f"job {job['job_name']}: kubernetes_sd_configs role {sd.get('role')!r}")
                        extra = set(sd) - {"role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata"}
                        if extra:
                            problems.append(f"job {job['job_name']}: unknown kubernetes_sd_configs fields {sorted(extra)}")
                        job.setdefault("static_configs", []).append({"targets": ["discovered.invalid:9100"]})
                with tempfile.TemporaryDirectory() as tmp:
                    for rules in config.get("rule_files", []):
                        os.symlink(pdir / rules, Path(tmp) / rules)
                    (Path(tmp) / name).write_text(yaml.safe_dump(config))
                    result = self.run([self.promtool, "check", "config", str(Path(tmp) / name)])
                if result.returncode != 0:
                    problems.append(result.stdout + result.stderr)
                self.check(f"promtool check config {name} (Kubernetes discovery checked by field: Debian's promtool lacks it)", problems)
            else:
                self.check(f"promtool check config {name}", [None if result.returncode == 0 else result.stdout + result.stderr])
        for group in yaml.safe_load((pdir / "alerts.yml").read_text())["groups"]:
            for rule in group["rules"]:
                self.metric_uses.append((f"alerts.yml: {rule.get('alert') or rule.get('record')}", rule["expr"]))

    # --- Grafana ------------------------------------------------------------------------------

    def grafana(self):
        print("Grafana (deploy/grafana)")
        path = self.root / "deploy/grafana/kiln-dashboard.json"
        try:
            dashboard = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            self.fail(self.rel(path), f"not JSON: {e}")
            return
        problems = []
        if dashboard.get("schemaVersion", 0) < 36:
            problems.append("schemaVersion below 36 (Grafana 9)")
        variables = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
        if "datasource" not in variables:
            problems.append("no `datasource` variable: the dashboard would be tied to one Prometheus")
        ids = set()
        panels = [p for p in dashboard["panels"] if p["type"] != "row"]
        for p in dashboard["panels"]:
            if p["id"] in ids:
                problems.append(f"panel id {p['id']} is used twice")
            ids.add(p["id"])
            g = p["gridPos"]
            if g["x"] + g["w"] > 24:
                problems.append(f"panel {p['title']!r} is wider than the grid")
        for p in panels:
            if p.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"panel {p['title']!r} does not use the datasource variable")
            if not p.get("targets"):
                problems.append(f"panel {p['title']!r} has no query")
            for t in p.get("targets", []):
                if not t.get("expr"):
                    problems.append(f"panel {p['title']!r} has an empty query")
                else:
                    self.metric_uses.append((f"dashboard: {p['title']}", t["expr"]))
        self.check(f"{self.rel(path)}: {len(panels)} panels", problems)
        for f in sorted((self.root / "deploy/grafana/provisioning").rglob("*.yml")):
            doc = yaml.safe_load(f.read_text())
            self.check(self.rel(f), [None if doc.get("apiVersion") == 1 else "apiVersion must be 1"])

    # --- PromQL and metric names ---------------------------------------------------------------

    def promql(self):
        """Parses every query of the dashboard and the autoscaler with promtool, as recording rules
        (Grafana's $__rate_interval and $__interval read as 5m)."""
        rules = []
        for i, (where, expr) in enumerate(self.metric_uses):
            if where.startswith("alerts.yml"):
                continue
            expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "5m").replace("$__range", "1h")
            rules.append({"record": f"kiln_validate:query_{i}", "expr": expr, "labels": {"where": where}})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "queries.yml")
            path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
            result = self.run([self.promtool, "check", "rules", str(path)])
        problems = []
        if result.returncode != 0:
            output = result.stdout + result.stderr
            for n in sorted({int(m.group(1)) for m in re.finditer(r"query_(\d+)", output)}):
                problems.append(f"{self.metric_uses[n][0]}: {self.metric_uses[n][1]}")
            problems.append(output)
        self.check(f"PromQL of {len(rules)} dashboard and autoscaler queries (promtool)", problems)

    def metrics(self):
        print("Queries and metric names against docs/metrics.md")
        self.promql()
        documented = self.documented_metrics() | NGINX_EXPORTER_METRICS
        problems = []
        used = set()
        for where, expr in self.metric_uses:
            # Metric names: identifiers followed by `{`, `[`, `)` or an operator, not label names
            # (followed by `=`, `!=`, `=~`) nor functions (followed by `(`) nor label lists of `by`.
            stripped = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
            stripped = re.sub(r"\{[^}]*\}", "{}", stripped)
            stripped = re.sub(r'"[^"]*"', '""', stripped)
            for name in re.findall(r"\b([a-z_:][a-z0-9_:]*)\b(?!\s*\()", stripped):
                if name.startswith(("kiln_", "process_", "nginx_")):
                    used.add(name)
                    if name not in documented:
                        problems.append(f"{where} uses {name}, which docs/metrics.md does not list")
        self.check(f"{len(used)} metric names used by the dashboard, the alerts and the autoscaler", problems)

    # --- nginx and images ---------------------------------------------------------------------

    def edge(self):
        print("Edge (nginx/kiln.conf.template as the containers render it) and images")
        template = (self.root / "nginx/kiln.conf.template").read_text()
        nginx = "/usr/sbin/nginx"
        for where, listen, tls in (("compose", "0.0.0.0:8080", "0.0.0.0:8443"), ("kubernetes", "0.0.0.0:80", "0.0.0.0:443")):
            with tempfile.TemporaryDirectory() as tmp:
                os.chmod(tmp, 0o755)
                values = {
                    "KILN_EDGE_LISTEN": listen, "KILN_EDGE_TLS_LISTEN": tls, "KILN_EDGE_CERT_DIR": f"{tmp}/certs",
                    "KILN_GATEWAY_ADDR": "127.0.0.1:3000", "KILN_NGINX_DIR": str(self.root / "nginx"),
                    "KILN_EDGE_RUNTIME_DIR": tmp,
                }
                conf = template
                for k, v in values.items():
                    conf = conf.replace("${" + k + "}", v)
                os.makedirs(f"{tmp}/certs")
                Path(tmp, "nginx.conf").write_text(conf)
                result = self.run([nginx, "-t", "-q", "-p", tmp, "-c", f"{tmp}/nginx.conf", "-e", f"{tmp}/error.log"])
                log = Path(tmp, "error.log").read_text() if Path(tmp, "error.log").exists() else ""
                self.check(f"nginx -t of the edge config ({where}: {listen}, {tls})",
                           [None if result.returncode == 0 else (result.stderr + log).strip()])
        self.check("nginx: /_edge/status is stub_status, loopback only", [
            None if re.search(r"location = /_edge/status \{[^}]*stub_status;[^}]*allow 127\.0\.0\.1;[^}]*deny all;", template)
            else "the location is missing or not restricted to loopback"])
        self.check("nginx: `worker_processes auto;` is where edge-entrypoint.sh replaces it (KILN_EDGE_WORKER_PROCESSES)", [
            None if re.search(r"^worker_processes auto;$", template, re.M) else "the line has changed: update the entrypoint's sed"])
        result = self.run(["sh", "-n", str(self.root / "deploy/docker/edge-entrypoint.sh")])
        self.check("deploy/docker/edge-entrypoint.sh parses", [None if result.returncode == 0 else result.stderr])

        dockerfile = (self.root / "deploy/docker/Dockerfile").read_text()
        stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
        problems = []
        finals = {}
        for stage in stages:
            header = stage.splitlines()[0]
            m = re.match(r"(\S+) AS (\S+)", header)
            if not m:
                problems.append(f"stage without a name: FROM {header}")
                continue
            finals[m.group(2)] = (m.group(1), stage)
        wanted = {"gateway", "worker", "dashboard", "acme", "demo", "edge"}
        problems += [f"no `{t}` target" for t in sorted(wanted - set(finals))]
        base_body = finals.get("runtime-base", ("", ""))[1]
        for target in sorted(wanted & set(finals)):
            image, body = finals[target]
            inherits = image == "runtime-base"
            if not (inherits or image.startswith(("debian:bookworm-slim", "nginx:"))):
                problems.append(f"{target} is built on {image}, not a slim runtime")
            if "tini" not in (body + (base_body if inherits else "")):
                problems.append(f"{target} does not run under tini")
            users = re.findall(r"^USER (\S+)", (base_body if inherits else "") + body, re.M)
            if not users or users[-1].split(":")[0] in ("root", "0"):
                problems.append(f"{target} runs as root")
            if re.search(r"\b(build-essential|gcc|cargo|rustc)\b", body):
                problems.append(f"{target} carries build tools")
        worker = finals.get("worker", ("", ""))[1]
        for pkg in ("chromium", "fonts-liberation", "fonts-noto-core", "fonts-noto-cjk", "fonts-noto-color-emoji"):
            if pkg not in worker:
                problems.append(f"the worker image lacks {pkg}")
        for var, port in (("KILN_GATEWAY_ADMIN_LISTEN", 9100), ("KILN_WORKER_ADMIN_LISTEN", 9101),
                          ("KILN_DASHBOARD_ADMIN_LISTEN", 9102), ("KILN_ACME_ADMIN_LISTEN", 9103)):
            if f"{var}=0.0.0.0:{port}" not in dockerfile:
                problems.append(f"{var} is not 0.0.0.0:{port} (docs/metrics.md)")
        known_vars = self.documented_variables()
        for var in sorted(set(re.findall(r"\b(KILN_[A-Z0-9_]+)=", dockerfile))):
            if var not in known_vars:
                problems.append(f"the Dockerfile sets {var}, which no document describes")
        self.check("deploy/docker/Dockerfile: targets, slim bases, tini, non-root, Chromium and fonts, admin ports", problems)
        ignore = (self.root / ".dockerignore").read_text().split() if (self.root / ".dockerignore").exists() else []
        self.check(".dockerignore keeps target/ and .git/ out of the build context",
                   [f"{p} is not ignored" for p in ("target/", ".git/", "fuzz/target/") if p not in ignore])

    # --- yamllint -----------------------------------------------------------------------------

    def yamllint(self):
        print("yamllint (relaxed)")
        files = [self.root / "docker-compose.yml"]
        files += sorted((self.root / "deploy").rglob("*.yml")) + sorted((self.root / "deploy").rglob("*.yaml"))
        files += sorted((self.root / ".github").rglob("*.yml"))
        config = "{extends: relaxed, rules: {line-length: {max: 140}, truthy: disable}}"
        result = self.run([str(self.bin / "yamllint"), "-f", "parsable", "-d", config] + [str(f) for f in files])
        errors = [line for line in result.stdout.splitlines() if "[error]" in line]
        self.check(f"{len(files)} YAML files", errors or [None if result.returncode == 0 else result.stderr.strip()])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--kubectl", required=True)
    parser.add_argument("--promtool", required=True)
    parser.add_argument("--modern-kustomize", default="")
    parser.add_argument("--bin", required=True)
    parser.add_argument("--compose", required=True)
    checker = Checker(parser.parse_args())
    checker.yamllint()
    checker.kubernetes()
    checker.compose()
    checker.workflows()
    checker.prometheus()
    checker.grafana()
    checker.metrics()
    checker.edge()
    print(f"validate-deploy: {checker.passed} passed, {checker.failed} failed")
    sys.exit(1 if checker.failed else 0)


if __name__ == "__main__":
    main()
