"""Packaging: what can be checked of the two deployments without systemd as PID 1 or a
Docker engine.

- `cmake --install` puts the binary, the unit (ExecStart rewritten to the install prefix),
  the default config and the bucket table in place; the installed config passes
  --check-config; a second install keeps an edited config.
- The installed unit passes `systemd-analyze verify` and `systemd-analyze security
  --offline=true` under a threshold, and states Type=notify, WatchdogSec, ExecReload → HUP,
  a system user with a world-readable StateDirectory (the CA certificate is public, the key
  0600) and the hardening the issue asks for.
- `cpack -G DEB` builds a package; `dpkg-deb` shows its control files (conffile, sysusers
  postinst, dependencies); `dpkg -i` installs it (the test runs as root on a throwaway CI
  machine), the installed unit passes `systemd-analyze verify`, the installed binary run as
  the package's user with the unit's umask leaves ca.crt and ca-bundle.pem readable by
  another user and ca.key not, and `dpkg -r` removes it again.
- docker/Dockerfile: the build stage installs exactly scripts/deps.sh BUILD_PACKAGES; the
  runtime stage is slim, non-root, has the CA volume, copies paths the install really
  produces, and installs a package for every shared library the binary needs.
- docker/compose.yaml and docker/k8s/*.yaml parse (python3-yaml), reference the admin
  probes on the port the config listens on; the configs they use pass --check-config; the
  compose healthcheck command works against a running sidecar. Kubernetes workloads run the
  sidecar as a native sidecar (an init container with restartPolicy Always and a startup
  probe) and pass Pod Security "restricted"; job.yaml is a Job whose pod can complete.

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
import test_pki
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


class TestScriptTest(unittest.TestCase):
    """./scripts/test never passes on zero tests, whatever configured build/ before it."""

    @staticmethod
    def script_commands() -> list:
        with open(os.path.join(REPO, "scripts", "test"), encoding="utf-8") as f:
            text = f.read().replace("\\\n", " ")
        return [line.strip() for line in text.splitlines() if not line.strip().startswith("#")]

    def test_every_ctest_run_fails_when_it_finds_no_test(self) -> None:
        runs = [c for c in self.script_commands() if re.search(r"\bctest\b", c)]
        self.assertGreaterEqual(len(runs), 4)
        for c in runs:
            self.assertIn("--no-tests=error", c)

    def test_every_test_stage_configures_the_tests_on(self) -> None:
        builds = [c for c in self.script_commands() if c.startswith("configure_and_build ")]
        self.assertGreaterEqual(len(builds), 4)
        for c in builds:
            wanted = "-DOKTA_SIDECAR_FUZZ=ON" if " build-fuzz " in c else "-DOKTA_SIDECAR_TESTS=ON"
            self.assertIn(wanted, c)

    def test_no_tests_error_turns_an_empty_run_into_a_failure(self) -> None:
        ctest = require_tool("ctest", "cmake")
        tmp = tempfile.mkdtemp(prefix="packaging-ctest-")
        self.addCleanup(shutil.rmtree, tmp, True)
        with open(os.path.join(tmp, "CTestTestfile.cmake"), "w", encoding="utf-8") as f:
            f.write("# no tests\n")
        self.assertEqual(run([ctest], cwd=tmp).returncode, 0, "ctest alone passes on nothing")
        self.assertNotEqual(run([ctest, "--no-tests=error"], cwd=tmp).returncode, 0)

    def test_scripts_run_then_release_stage_finds_the_integration_tests(self) -> None:
        # The README's order: ./scripts/run configures build/ with the tests off; the release
        # stage's configure (taken from scripts/test) must switch them back on.
        tmp = tempfile.mkdtemp(prefix="packaging-order-")
        self.addCleanup(shutil.rmtree, tmp, True)
        with open(os.path.join(REPO, "scripts", "run"), encoding="utf-8") as f:
            run_args = re.search(r"^configure_and_build build (.*)$", f.read(), re.M).group(1).split()
        release = next(c for c in self.script_commands() if c.startswith("configure_and_build build "))
        release_args = release.split(" -- ")[0].split()[2:]
        for args, want_tests in ((run_args, False), (release_args, True)):
            p = run(["cmake", "-S", REPO, "-B", tmp, "-G", "Ninja", *args], timeout=300)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            # -N lists without running (and without --no-tests=error's check).
            listed = run(["ctest", "-N", "-L", "integration"], cwd=tmp)
            total = int(re.search(r"Total Tests: (\d+)", listed.stdout).group(1))
            self.assertEqual(total > 0, want_tests, listed.stdout + listed.stderr)
            if want_tests:
                self.assertIn("integration.ops_test", listed.stdout)


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

    def test_install_keeps_an_edited_config(self) -> None:
        cfg = os.path.join(self.prefix, "etc", "okta-sidecar", "okta-sidecar.json")
        with open(cfg, encoding="utf-8") as f:
            edited = f.read().replace('"threads": 0', '"threads": 2')
        self.assertIn('"threads": 2', edited)
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(edited)
        p = run(["cmake", "--install", build_dir(), "--prefix", self.prefix], timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(cfg, encoding="utf-8") as f:
            self.assertEqual(f.read(), edited, "cmake --install overwrote an edited config")
        with open(cfg + ".dist", encoding="utf-8") as f, \
                open(os.path.join(REPO, "config", "okta-sidecar.json"), encoding="utf-8") as g:
            self.assertEqual(f.read(), g.read(), "the new defaults go next to it")

    def test_unit_states_what_the_issue_asks(self) -> None:
        d = unit_directives(self.unit)
        # A static system user, not DynamicUser= (whose state directory sits under the 0700
        # /var/lib/private, out of reach of the apps that must read ca.crt).
        want = {"Type": "notify", "NotifyAccess": "main", "ExecReload": "/bin/kill -HUP $MAINPID",
                "User": "okta-sidecar", "StateDirectory": "okta-sidecar",
                "StateDirectoryMode": "0755", "ProtectSystem": "strict",
                "NoNewPrivileges": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": "",
                "RestartPreventExitStatus": "2"}
        for key, value in want.items():
            self.assertEqual(d.get(("Service", key)), [value], key)
        self.assertNotIn(("Service", "DynamicUser"), d)
        sysusers = os.path.join(self.prefix, "lib", "sysusers.d", "okta-sidecar.conf")
        with open(sysusers, encoding="utf-8") as f:
            self.assertRegex(f.read(), r"(?m)^u okta-sidecar ")
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


class DebPackageTest(unittest.TestCase):
    """cpack -G DEB, then the package as dpkg sees it and as it installs."""

    PACKAGE = "okta-sidecar"

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.mkdtemp(prefix="packaging-deb-")
        cpack = require_tool("cpack", "cmake")
        require_tool("dpkg-shlibdeps", "dpkg-dev")
        p = run([cpack, "-G", "DEB", "-B", cls.tmp, "--config",
                 os.path.join(build_dir(), "CPackConfig.cmake")], timeout=300)
        debs = glob.glob(os.path.join(cls.tmp, "*.deb"))
        if p.returncode != 0 or len(debs) != 1:
            raise AssertionError(f"cpack -G DEB failed:\n{p.stdout}\n{p.stderr}")
        cls.deb = debs[0]

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_control_and_contents(self) -> None:
        info = run(["dpkg-deb", "-I", self.deb])
        self.assertEqual(info.returncode, 0, info.stderr)
        self.assertRegex(info.stdout, r"(?m)^ Package: okta-sidecar$")
        depends = re.search(r"(?m)^ Depends: (.*)$", info.stdout).group(1)
        for pkg in ("libssl3", "libspdlog1.10", "libhiredis0.14", "ca-certificates", "systemd"):
            self.assertIn(pkg, depends)
        ctl = os.path.join(self.tmp, "control")
        self.assertEqual(run(["dpkg-deb", "-e", self.deb, ctl]).returncode, 0)
        with open(os.path.join(ctl, "conffiles"), encoding="utf-8") as f:
            self.assertEqual(f.read().split(), ["/etc/okta-sidecar/okta-sidecar.json"])
        with open(os.path.join(ctl, "postinst"), encoding="utf-8") as f:
            self.assertIn("systemd-sysusers /usr/lib/sysusers.d/okta-sidecar.conf", f.read())
        listing = run(["dpkg-deb", "-c", self.deb]).stdout
        for path in ("./usr/bin/okta-sidecar", "./etc/okta-sidecar/okta-sidecar.json",
                     "./usr/lib/systemd/system/okta-sidecar.service",
                     "./usr/lib/sysusers.d/okta-sidecar.conf",
                     "./usr/share/okta-sidecar/okta-buckets.json",
                     "./usr/share/doc/okta-sidecar/LICENSE"):
            self.assertIn(path, listing)

    def test_dpkg_install_verify_and_remove(self) -> None:
        if os.geteuid() != 0:
            raise AssertionError("dpkg -i needs root: run the packaging test as root (CI does)")
        q = run(["dpkg-query", "-W", "-f=${Status}", self.PACKAGE])
        if "installed" in q.stdout and "not-installed" not in q.stdout:
            raise AssertionError("okta-sidecar is already installed on this machine: "
                                 "the test will not replace it")
        self.addCleanup(run, ["dpkg", "--purge", self.PACKAGE], timeout=120)
        p = run(["dpkg", "-i", self.deb], timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(run(["/usr/bin/okta-sidecar", "--version"]).returncode, 0)
        c = check_config("/etc/okta-sidecar/okta-sidecar.json")
        self.assertEqual(c.returncode, 0, c.stdout + c.stderr)
        self.assertEqual(run(["getent", "passwd", "okta-sidecar"]).returncode, 0,
                         "postinst creates the unit's User= with systemd-sysusers")
        unit = "/usr/lib/systemd/system/okta-sidecar.service"
        self.assertEqual(unit_directives(unit)[("Service", "ExecStart")],
                         ["/usr/bin/okta-sidecar --config /etc/okta-sidecar/okta-sidecar.json "
                          "--state-dir /var/lib/okta-sidecar"])
        tool = require_tool("systemd-analyze", "systemd")
        v = run([tool, "verify", "--man=no", unit], timeout=60)
        self.assertEqual((v.returncode, v.stdout + v.stderr), (0, ""))
        # What the unit sets up, by hand (no systemd as PID 1 here): the package's user, a 0755
        # state directory, UMask=0077. Another user can read the CA certificate and the bundle
        # it must trust, not the key.
        setpriv = require_tool("setpriv", "util-linux")
        runner = [setpriv, "--reuid=okta-sidecar", "--regid=okta-sidecar", "--clear-groups",
                  "sh", "-c", 'umask 077; exec /usr/bin/okta-sidecar "$@"', "okta-sidecar"]
        sc = sidecar.Sidecar({}, binary=runner)
        shutil.chown(sc.state_dir, "okta-sidecar", "okta-sidecar")
        os.chmod(sc.state_dir, 0o755)
        with sc:
            for name, mode in (("ca.crt", 0o644), ("ca-bundle.pem", 0o644), ("ca.key", 0o600)):
                st = os.stat(os.path.join(sc.state_dir, name))
                self.assertEqual((oct(st.st_mode & 0o777), st.st_uid),
                                 (oct(mode), int(run(["id", "-u", "okta-sidecar"]).stdout)), name)
            as_nobody = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat"]
            self.assertEqual(run(as_nobody + [os.path.join(sc.state_dir, "ca.crt")]).returncode, 0)
            self.assertEqual(run(as_nobody + [os.path.join(sc.state_dir, "ca-bundle.pem")]).returncode, 0)
            self.assertNotEqual(run(as_nobody + [os.path.join(sc.state_dir, "ca.key")]).returncode, 0)
        # An edited configuration survives reinstalling the package (a dpkg conffile).
        cfg = "/etc/okta-sidecar/okta-sidecar.json"
        with open(cfg, encoding="utf-8") as f:
            edited = f.read().replace('"threads": 0', '"threads": 2')
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(edited)
        p = run(["dpkg", "-i", "--force-confold", self.deb], timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(cfg, encoding="utf-8") as f:
            self.assertEqual(f.read(), edited)
        r = run(["dpkg", "-r", self.PACKAGE], timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertFalse(os.path.exists("/usr/bin/okta-sidecar"))
        self.assertTrue(os.path.exists(cfg), "dpkg -r keeps conffiles; --purge removes them")


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

    @staticmethod
    def native_sidecar(spec: dict):
        """The okta-sidecar container of a pod spec, which must be a native sidecar."""
        for c in spec.get("initContainers", []):
            if c["name"] == "okta-sidecar":
                return c
        return None

    def test_kubernetes_sidecar_workloads(self) -> None:
        config_maps = {d["metadata"]["name"]: d for d in self.k8s if d["kind"] == "ConfigMap"}
        tmp = tempfile.mkdtemp(prefix="packaging-k8s-")
        self.addCleanup(shutil.rmtree, tmp, True)
        # The CA pair the manifests mount at /ca (from the Secret, copied by ca-install).
        pki = test_pki.make_pki(tmp, names=("acme.okta.com",))
        seen = 0
        for doc in self.k8s:
            for spec in self.pod_specs(doc):
                containers = {c["name"]: c for c in spec["containers"]}
                self.assertNotIn("okta-sidecar", containers,
                                 "a plain sidecar container starts after and stops before the app")
                sc = self.native_sidecar(spec)
                if sc is None:
                    continue
                seen += 1
                with self.subTest(workload=doc["metadata"]["name"]):
                    self.check_workload(spec, sc, containers, config_maps, tmp, pki)
        self.assertGreaterEqual(seen, 3, "pod.yaml, fleet.yaml and job.yaml each run a sidecar")

    def test_kubernetes_pod_security_restricted(self) -> None:
        # https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted
        seen = 0
        for doc in self.k8s:
            for spec in self.pod_specs(doc):
                seen += 1
                name = doc["metadata"]["name"]
                pod_sc = spec.get("securityContext", {})
                self.assertEqual(pod_sc.get("seccompProfile", {}).get("type"), "RuntimeDefault", name)
                self.assertNotEqual(pod_sc.get("runAsUser"), 0, name)
                for c in spec.get("initContainers", []) + spec["containers"]:
                    with self.subTest(workload=name, container=c["name"]):
                        csc = c.get("securityContext", {})
                        self.assertTrue(csc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")),
                                        "runAsNonRoot")
                        self.assertNotEqual(csc.get("runAsUser", pod_sc.get("runAsUser")), 0)
                        self.assertIs(csc.get("allowPrivilegeEscalation"), False)
                        self.assertEqual(csc.get("capabilities", {}).get("drop"), ["ALL"])
                        self.assertNotIn("add", csc.get("capabilities", {}))
                        self.assertNotIn("privileged", csc)
        self.assertGreaterEqual(seen, 4)

    def test_kubernetes_job_completes(self) -> None:
        jobs = [d for d in self.k8s if d["kind"] == "Job"]
        self.assertEqual(len(jobs), 1, "docker/k8s/job.yaml")
        spec = jobs[0]["spec"]["template"]["spec"]
        self.assertIn(spec["restartPolicy"], ("Never", "OnFailure"))
        # The pod completes when its (only) main container exits: the sidecar is an init
        # container with restartPolicy Always, which the kubelet stops then.
        self.assertIsNotNone(self.native_sidecar(spec))
        for c in spec["containers"]:
            self.assertNotIn("sleep infinity", " ".join(c.get("command", []) + c.get("args", [])))

    def check_workload(self, spec: dict, sc: dict, containers: dict, config_maps: dict, tmp: str,
                       pki) -> None:
        self.assertEqual(sc.get("restartPolicy"), "Always")
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in sc["volumeMounts"]}
        # The config file the container is started with comes from a ConfigMap of the same
        # manifests, and it passes --check-config (its CA files as the /ca volume holds them).
        cfg_path = sc["args"][sc["args"].index("--config") + 1]
        cm_name = volumes[mounts[os.path.dirname(cfg_path)]]["configMap"]["name"]
        cfg_text = config_maps[cm_name]["data"][os.path.basename(cfg_path)]
        cfg = json.loads(cfg_text)
        ca_dir = os.path.join(tmp, "ca")
        os.makedirs(ca_dir, exist_ok=True)
        shutil.copy(pki.ca_cert, os.path.join(ca_dir, "ca.crt"))
        shutil.copy(pki.ca_key, os.path.join(ca_dir, "ca.key"))
        os.chmod(os.path.join(ca_dir, "ca.key"), 0o600)
        path = os.path.join(tmp, cm_name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(cfg_text.replace('"/ca/', f'"{ca_dir}/'))
        p = check_config(path)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

        self.assertTrue(spec["securityContext"]["runAsNonRoot"])
        self.assertGreaterEqual(spec["terminationGracePeriodSeconds"], 35)
        ports = {p["name"]: p["containerPort"] for p in sc["ports"]}
        self.assertEqual(str(ports["admin"]), cfg["admin_listen"].rsplit(":", 1)[1])
        probes = {k: (sc[k]["httpGet"]["path"], sc[k]["httpGet"]["port"])
                  for k in ("startupProbe", "readinessProbe", "livenessProbe")}
        # Probes use /healthz and /readyz only: /status stays for the pod's loopback.
        self.assertEqual(probes, {"startupProbe": ("/readyz", "admin"),
                                  "readinessProbe": ("/readyz", "admin"),
                                  "livenessProbe": ("/healthz", "admin")})
        self.assertIn(os.path.dirname(cfg["ca"]["key_file"]), mounts)
        # The CA comes from one Secret, for stable trust across replicas; the app container
        # sees only its certificate, and reaches the proxy on the pod's loopback.
        secrets = {v["secret"]["secretName"] for v in volumes.values() if "secret" in v}
        self.assertEqual(len(secrets), 1, secrets)
        app = next(iter(containers.values()))
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
