"""Packaging: what can be checked of the two deployments without systemd as PID 1 or a
Docker engine.

- `cmake --install` puts the binary, the unit (ExecStart rewritten to the install prefix),
  the default config and the bucket table in place; the installed config passes
  --check-config.
- The installed unit passes `systemd-analyze verify` and `systemd-analyze security
  --offline=true` under a threshold, and states Type=notify, WatchdogSec, ExecReload → HUP,
  DynamicUser/StateDirectory and the hardening the issue asks for.
- docker/Dockerfile: the build stage installs exactly scripts/deps.sh BUILD_PACKAGES; the
  runtime stage is slim, non-root, has the CA volume, copies paths the install really
  produces, and installs a package for every shared library the binary needs.
- docker/compose.yaml and docker/k8s/*.yaml parse (python3-yaml), reference the admin
  probes on the port the config listens on; the configs they use pass --check-config; the
  compose healthcheck command works against a running sidecar.

Run: cd tests/integration && PYTHONPATH=../support python3 -m unittest -v packaging_test
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest

import sidecar
from tools import require_tool

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCKER = os.path.join(REPO, "docker")
UNIT = "okta-sidecar.service"
# systemd-analyze security rates the unit 1.3 today; a change that weakens the sandbox fails.
SECURITY_THRESHOLD = 2
# Present in every Debian image, slim included (apt itself needs them).
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}



def require_yaml():
    try:
        import yaml  # noqa: PLC0415
    except ImportError as e:
        raise AssertionError("Python module yaml missing: install the Debian package "
                             "`python3-yaml` (scripts/deps.sh TEST_PACKAGES lists it)") from e
    return yaml


def run(args: list, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kw)


def check_config(path: str) -> subprocess.CompletedProcess:
    return run([sidecar.sidecar_binary(), "--check-config", "--config", path], timeout=30)


def build_dir() -> str:
    # The binary is written to the top of its build tree (RUNTIME_OUTPUT_DIRECTORY).
    d = os.path.dirname(os.path.abspath(sidecar.sidecar_binary()))
    if not os.path.exists(os.path.join(d, "cmake_install.cmake")):
        raise AssertionError(f"{d} (from OKTA_SIDECAR_BIN) is not a configured build tree")
    return d


def unit_directives(path: str) -> dict:
    """{(section, key): [values...]} of a unit file (keys may repeat)."""
    out: dict = {}
    section = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            out.setdefault((section, key.strip()), []).append(value.strip())
    return out


class InstallAndSystemdTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.mkdtemp(prefix="packaging-test-")
        cls.prefix = os.path.join(cls.tmp, "prefix")
        p = run(["cmake", "--install", build_dir(), "--prefix", cls.prefix], timeout=120)
        if p.returncode != 0:
            raise AssertionError(f"cmake --install failed:\n{p.stdout}\n{p.stderr}")
        cls.unit = os.path.join(cls.prefix, "lib", "systemd", "system", UNIT)

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_install_layout(self) -> None:
        binary = os.path.join(self.prefix, "bin", "okta-sidecar")
        self.assertTrue(os.access(binary, os.X_OK), binary)
        self.assertEqual(run([binary, "--version"]).returncode, 0)
        cfg = os.path.join(self.prefix, "etc", "okta-sidecar", "okta-sidecar.json")
        p = check_config(cfg)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(os.path.join(self.prefix, "share", "okta-sidecar", "okta-buckets.json"),
                  encoding="utf-8") as f:
            self.assertTrue(json.load(f)["groups"])
        self.assertTrue(os.path.isfile(self.unit))
        d = unit_directives(self.unit)
        self.assertEqual(d[("Service", "ExecStart")],
                         [f"{binary} --config {cfg} --state-dir /var/lib/okta-sidecar"])

    def test_unit_states_what_the_issue_asks(self) -> None:
        d = unit_directives(self.unit)
        want = {"Type": "notify", "NotifyAccess": "main", "ExecReload": "/bin/kill -HUP $MAINPID",
                "DynamicUser": "yes", "StateDirectory": "okta-sidecar", "ProtectSystem": "strict",
                "NoNewPrivileges": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "",
                "RestartPreventExitStatus": "2"}
        for key, value in want.items():
            self.assertEqual(d.get(("Service", key)), [value], key)
        self.assertIn("AF_INET", d[("Service", "RestrictAddressFamilies")][0].split())
        watchdog = int(d[("Service", "WatchdogSec")][0].rstrip("s"))
        stop = int(d[("Service", "TimeoutStopSec")][0].rstrip("s"))
        with open(os.path.join(REPO, "config", "okta-sidecar.json"), encoding="utf-8") as f:
            drain_s = json.load(f)["client"]["drain_timeout_ms"] / 1000
        self.assertGreater(stop, drain_s + 3, "SIGKILL would cut the drain short")
        self.assertGreater(watchdog, 1)

    def test_systemd_analyze_verify(self) -> None:
        tool = require_tool("systemd-analyze", "systemd")
        p = run([tool, "verify", "--man=no", self.unit], timeout=60)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""))
        # The check can fail: a unit whose binary is missing is rejected.
        broken = os.path.join(self.tmp, UNIT)
        with open(self.unit, encoding="utf-8") as f:
            text = f.read().replace(os.path.join(self.prefix, "bin"), "/nonexistent")
        with open(broken, "w", encoding="utf-8") as f:
            f.write(text)
        self.assertNotEqual(run([tool, "verify", "--man=no", broken]).returncode, 0)

    def test_systemd_analyze_security(self) -> None:
        tool = require_tool("systemd-analyze", "systemd")
        # --threshold counts tenths: the rating 1.3 shown is 13 there.
        p = run([tool, "security", "--offline=true", f"--threshold={SECURITY_THRESHOLD * 10}",
                 "--no-pager", self.unit], timeout=60)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", p.stdout)
        self.assertIsNotNone(m, p.stdout + p.stderr)
        self.assertEqual(p.returncode, 0, f"exposure {m.group(1)} > {SECURITY_THRESHOLD}:\n"
                         + p.stdout[-3000:])
        self.assertLessEqual(float(m.group(1)), SECURITY_THRESHOLD)


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        with open(os.path.join(DOCKER, "Dockerfile"), encoding="utf-8") as f:
            text = f.read().replace("\\\n", " ")
        cls.stages = re.split(r"^FROM ", text, flags=re.M)[1:]

    @staticmethod
    def installs(stage: str) -> set:
        found = re.findall(r"apt-get install ([^&\n]*)", stage)
        return {w for i in found for w in i.split() if not w.startswith("-")}

    def test_stages(self) -> None:
        self.assertEqual(len(self.stages), 2, "expected a build and a runtime stage")
        build_from, runtime_from = (s.splitlines()[0].split() for s in self.stages)
        self.assertEqual((build_from[1:], runtime_from[1:]), (["AS", "build"], ["AS", "runtime"]))
        self.assertIn(build_from[0], ("debian:${DEBIAN_RELEASE}", "debian:bookworm", "debian:12"))
        self.assertIn(runtime_from[0], ("debian:${DEBIAN_RELEASE}-slim", "debian:bookworm-slim",
                                        "debian:12-slim"))
        with open(os.path.join(DOCKER, "Dockerfile"), encoding="utf-8") as f:
            self.assertRegex(f.read(), r"(?m)^ARG DEBIAN_RELEASE=bookworm$", "Debian 12")

    def test_build_stage_installs_exactly_deps_sh_build_packages(self) -> None:
        p = run(["bash", "-c", '. scripts/deps.sh; echo "${BUILD_PACKAGES[@]}"'], cwd=REPO)
        self.assertEqual(p.returncode, 0, p.stderr)
        deps = set(p.stdout.split())
        self.assertTrue(deps)
        self.assertEqual(self.installs(self.stages[0]), deps)

    def test_runtime_is_non_root_with_ca_volume(self) -> None:
        rt = self.stages[1]
        user = re.findall(r"^USER (\S+)", rt, re.M)
        self.assertEqual(len(user), 1)
        self.assertNotIn(user[0].split(":")[0], ("0", "root"))
        volumes = json.loads(re.search(r"^VOLUME (\[.*\])", rt, re.M).group(1))
        with open(os.path.join(DOCKER, "okta-sidecar.container.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        for path in (cfg["ca"]["cert_file"], cfg["ca"]["key_file"], cfg["state_dir"] + "/"):
            self.assertTrue(any(path.startswith(v.rstrip("/") + "/") for v in volumes),
                            f"{path} is not in a VOLUME {volumes}")
        self.assertNotEqual(os.path.dirname(cfg["ca"]["cert_file"]),
                            os.path.dirname(cfg["ca"]["key_file"]),
                            "the volume apps mount must not hold the CA key")
        exposed = set(re.search(r"^EXPOSE (.*)$", rt, re.M).group(1).split())
        ports = {cfg["listen"].rsplit(":", 1)[1], cfg["admin_listen"].rsplit(":", 1)[1]}
        self.assertEqual(exposed, ports)
        self.assertFalse(self.installs(rt) & {"g++", "cmake", "libboost1.81-dev"}, "not slim")

    def test_copied_paths_exist_in_a_real_install(self) -> None:
        tmp = tempfile.mkdtemp(prefix="packaging-destdir-")
        self.addCleanup(shutil.rmtree, tmp, True)
        build = self.stages[0]
        prefix = re.search(r"-DCMAKE_INSTALL_PREFIX=(\S+)", build).group(1)
        destdir = re.search(r"DESTDIR=(\S+) cmake --install", build).group(1)
        p = run(["cmake", "--install", build_dir(), "--prefix", prefix], timeout=120,
                env=dict(os.environ, DESTDIR=os.path.join(tmp, destdir.lstrip("/"))))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for src, _ in re.findall(r"^COPY --from=build (\S+) (\S+)$", self.stages[1], re.M):
            self.assertTrue(os.path.exists(os.path.join(tmp, src.lstrip("/"))), src)
        copies = re.findall(r"^COPY (?!--)(\S+) (\S+)$", self.stages[1], re.M)
        self.assertTrue(copies)
        for src, dst in copies:
            self.assertTrue(os.path.exists(os.path.join(REPO, src)), src)
        entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])", self.stages[1], re.M).group(1))
        cmd = json.loads(re.search(r"^CMD (\[.*\])", self.stages[1], re.M).group(1))
        self.assertIn(entry[0], [d for _, d in re.findall(r"^COPY --from=build (\S+) (\S+)$",
                                                          self.stages[1], re.M)])
        self.assertIn(cmd[cmd.index("--config") + 1], [d for _, d in copies])

    def test_runtime_packages_provide_every_shared_library(self) -> None:
        require_tool("ldd", "libc-bin")
        p = run(["ldd", sidecar.sidecar_binary()])
        self.assertEqual(p.returncode, 0, p.stderr)
        runtime = self.installs(self.stages[1]) | BASE_IMAGE_PACKAGES
        for lib, path in re.findall(r"^\s*(\S+) => (\S+)", p.stdout, re.M):
            if re.match(r"lib(a|ub|t|l)san", lib):
                continue   # sanitizer runtimes: only in the ASan/TSan test builds
            owner = None
            real = os.path.realpath(path)
            for cand in (path, real, "/usr" + path, "/usr" + real, re.sub("^/usr", "", real)):
                q = run(["dpkg", "-S", cand])
                if q.returncode == 0:
                    owner = q.stdout.split(":")[0]
                    break
            self.assertIsNotNone(owner, f"no Debian package owns {path}")
            self.assertIn(owner, runtime, f"{lib} comes from {owner}, which the runtime stage "
                          "does not install")


class ComposeAndKubernetesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        yaml = require_yaml()
        with open(os.path.join(DOCKER, "compose.yaml"), encoding="utf-8") as f:
            cls.compose = yaml.safe_load(f)
        cls.k8s = []
        for path in sorted(glob.glob(os.path.join(DOCKER, "k8s", "*.yaml"))):
            with open(path, encoding="utf-8") as f:
                cls.k8s.extend(d for d in yaml.safe_load_all(f) if d)
        with open(os.path.join(DOCKER, "okta-sidecar.container.json"), encoding="utf-8") as f:
            cls.container_cfg = json.load(f)

    def test_container_config_passes_check_config(self) -> None:
        p = check_config(os.path.join(DOCKER, "okta-sidecar.container.json"))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_compose(self) -> None:
        services = self.compose["services"]
        sc, app = services["okta-sidecar"], services["app"]
        self.assertEqual(sc["build"]["dockerfile"], "docker/Dockerfile")
        proxy_port = self.container_cfg["listen"].rsplit(":", 1)[1]
        admin_port = self.container_cfg["admin_listen"].rsplit(":", 1)[1]
        self.assertEqual(app["environment"]["HTTPS_PROXY"], f"http://okta-sidecar:{proxy_port}")
        self.assertIn("okta-sidecar", app["environment"]["NO_PROXY"].split(","))
        self.assertEqual(app["depends_on"]["okta-sidecar"]["condition"], "service_healthy")
        health = " ".join(sc["healthcheck"]["test"])
        self.assertIn(f"/dev/tcp/127.0.0.1/{admin_port}", health)
        self.assertIn("GET /readyz", health)
        ca_dir = os.path.dirname(self.container_cfg["ca"]["cert_file"])
        sc_vols = {v.split(":")[1]: v.split(":")[0] for v in sc["volumes"]}
        app_vols = [v.split(":") for v in app["volumes"]]
        self.assertIn([sc_vols[ca_dir], ca_dir, "ro"], app_vols, "app must mount the CA read-only")
        key_dir = os.path.dirname(self.container_cfg["ca"]["key_file"])
        self.assertNotIn(sc_vols[key_dir], [v[0] for v in app_vols], "the CA key stays private")
        self.assertGreaterEqual(int(sc["stop_grace_period"].rstrip("s")), 35)
        self.assertTrue(self.compose["networks"]["internal"]["internal"])

    def test_compose_healthcheck_command_against_a_real_sidecar(self) -> None:
        bash = require_tool("bash", "bash")
        test = self.compose["services"]["okta-sidecar"]["healthcheck"]["test"]
        self.assertEqual(test[:3], ["CMD", "bash", "-c"])
        admin_port = self.container_cfg["admin_listen"].rsplit(":", 1)[1]
        with sidecar.Sidecar({}) as sc:
            script = test[3].replace(f"/{admin_port}", f"/{sc.admin_listen[1]}")
            self.assertEqual(run([bash, "-c", script], timeout=10).returncode, 0)
            sc.proc.send_signal(signal.SIGSTOP)   # a wedged process answers nothing
            try:
                self.assertNotEqual(run(["timeout", "3", bash, "-c", script], timeout=10)
                                    .returncode, 0)
            finally:
                sc.proc.send_signal(signal.SIGCONT)

    @staticmethod
    def pod_specs(doc: dict) -> list:
        if doc["kind"] == "Pod":
            return [doc["spec"]]
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            return [doc["spec"]["template"]["spec"]]
        return []

    def test_kubernetes_sidecar_workloads(self) -> None:
        config_maps = {d["metadata"]["name"]: d for d in self.k8s if d["kind"] == "ConfigMap"}
        tmp = tempfile.mkdtemp(prefix="packaging-k8s-")
        self.addCleanup(shutil.rmtree, tmp, True)
        seen = 0
        for doc in self.k8s:
            for spec in self.pod_specs(doc):
                containers = {c["name"]: c for c in spec["containers"]}
                if "okta-sidecar" not in containers:
                    continue
                seen += 1
                with self.subTest(workload=doc["metadata"]["name"]):
                    self.check_workload(spec, containers, config_maps, tmp)
        self.assertGreaterEqual(seen, 1, "no workload runs an okta-sidecar container")

    def check_workload(self, spec: dict, containers: dict, config_maps: dict, tmp: str) -> None:
        sc = containers["okta-sidecar"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in sc["volumeMounts"]}
        # The config file the container is started with comes from a ConfigMap of the same
        # manifests, and it passes --check-config.
        cfg_path = sc["args"][sc["args"].index("--config") + 1]
        cm_name = volumes[mounts[os.path.dirname(cfg_path)]]["configMap"]["name"]
        cfg_text = config_maps[cm_name]["data"][os.path.basename(cfg_path)]
        cfg = json.loads(cfg_text)
        path = os.path.join(tmp, cm_name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(cfg_text)
        p = check_config(path)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

        self.assertTrue(spec["securityContext"]["runAsNonRoot"])
        self.assertGreaterEqual(spec["terminationGracePeriodSeconds"], 35)
        ports = {p["name"]: p["containerPort"] for p in sc["ports"]}
        self.assertEqual(str(ports["admin"]), cfg["admin_listen"].rsplit(":", 1)[1])
        probes = {k: (sc[k]["httpGet"]["path"], sc[k]["httpGet"]["port"])
                  for k in ("readinessProbe", "livenessProbe")}
        self.assertEqual(probes, {"readinessProbe": ("/readyz", "admin"),
                                  "livenessProbe": ("/healthz", "admin")})
        self.assertIn(os.path.dirname(cfg["ca"]["key_file"]), mounts)
        # The CA comes from one Secret, for stable trust across replicas; the app container
        # sees only its certificate, and reaches the proxy on the pod's loopback.
        secrets = {v["secret"]["secretName"] for v in volumes.values() if "secret" in v}
        self.assertEqual(len(secrets), 1, secrets)
        app = containers["app"]
        app_secret_vols = [volumes[m["name"]] for m in app["volumeMounts"]
                           if "secret" in volumes[m["name"]]]
        self.assertTrue(app_secret_vols, "the app must trust the CA from the Secret")
        for v in app_secret_vols:
            self.assertEqual([i["key"] for i in v["secret"]["items"]], ["tls.crt"])
        env = {e["name"]: e.get("value") for e in app["env"]}
        self.assertEqual(env["HTTPS_PROXY"], "http://" + cfg["listen"])
        self.assertTrue(cfg["listen"].startswith("127.0.0.1:"), "proxy reachable from outside the pod")

if __name__ == "__main__":
    unittest.main()
