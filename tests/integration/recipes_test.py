"""The client recipes of README.md and docs/ops-deploy.md, run exactly as written.

A recipe is a fenced block right after a `<!-- recipe: NAME -->` line. Each file has one
`setup` recipe (where the proxy and the admin port are, and fetching ca.crt / ca-bundle.pem);
the test replaces only its two addresses (http://127.0.0.1:3128 and http://127.0.0.1:9901) by
the ports of a sidecar it starts, then runs `setup` + the recipe with bash in a scratch
directory, with `OKTA_ORG_URL=https://acme.okta.com` (resolved by the sidecar to the Okta
simulator: `upstream.resolve` + `upstream.trust_file`) and a token. A recipe passes when it
exits 0 and the sidecar counted its request to /api/v1/users as a 200 from Okta, so a client
that went around the proxy (or did not run) cannot pass.

The Node recipes install the Okta Node SDK and undici from npm, as they tell users to (the
test needs the npm registry, and node + npm: scripts/deps.sh installs them when missing).

Run: cd tests/integration && PYTHONPATH=../support python3 -m unittest -v recipes_test
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import unittest

import okta_sim
import sidecar
import test_pki
from tools import require_tool

ACME = "acme.okta.com"
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCS = {"README.md": os.path.join(REPO, "README.md"),
        "docs/ops-deploy.md": os.path.join(REPO, "docs", "ops-deploy.md")}
DOC_PROXY = "http://127.0.0.1:3128"
DOC_ADMIN = "http://127.0.0.1:9901"
# Every recipe the issue asks to run on this machine, and where it must be.
EXPECTED = {"README.md": {"setup", "curl"},
            "docs/ops-deploy.md": {"setup", "curl", "python-requests", "node-okta-sdk",
                                   "node-fetch"}}
_RECIPE = re.compile(r"^<!-- recipe: ([a-z0-9-]+) -->\n```[a-z]*\n(.*?)^```$", re.M | re.S)


def recipes(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    found: dict = {}
    for name, body in _RECIPE.findall(text):
        if name in found:
            raise AssertionError(f"{path}: two recipes named {name}")
        found[name] = body
    markers = re.findall(r"^<!-- recipe: ([a-z0-9-]+) -->$", text, re.M)
    if sorted(markers) != sorted(found):
        raise AssertionError(f"{path}: a recipe marker is not followed by a fenced block")
    return found


class RecipesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.bash = require_tool("bash", "bash")
        require_tool("curl", "curl")
        cls.tmp = tempfile.mkdtemp(prefix="recipes-test-")
        cls.pki = test_pki.make_pki(cls.tmp, names=(ACME,))
        cls.sim = okta_sim.OktaSimulator(cls.pki.server_cert, cls.pki.server_key).start()
        cls.sc = sidecar.Sidecar({"intercept_hosts": [ACME]}, upstream_port=cls.sim.port,
                                 trust_file=cls.pki.ca_cert, hosts=(ACME,)).start()
        cls.work = os.path.join(cls.tmp, "work")   # one scratch dir: npm installs are shared
        os.makedirs(cls.work)

    @classmethod
    def tearDownClass(cls) -> None:
        sidecar.shut_down(cls.sc, cls.sim, tmp=cls.tmp)

    def users_ok(self) -> float:
        return sidecar.metric(self.sc, "okta_sidecar_upstream_responses_total", host=ACME,
                              status="200")

    def run_recipe(self, doc: str, name: str) -> None:
        found = recipes(DOCS[doc])
        setup = found["setup"]
        self.assertIn(DOC_PROXY, setup)
        self.assertIn(DOC_ADMIN, setup)
        setup = setup.replace(DOC_PROXY, self.sc.proxy_url).replace(DOC_ADMIN, self.sc.admin_url)
        # The client blocks never name the ports: they use $PROXY / $ADMIN from the setup.
        self.assertNotIn("127.0.0.1:3128", found[name])
        self.assertNotIn("127.0.0.1:9901", found[name])
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(OKTA_ORG_URL=f"https://{ACME}", OKTA_API_TOKEN="00recipe-test-token",
                   HOME=os.path.join(self.tmp, "home"), npm_config_update_notifier="false")
        before = self.users_ok()
        p = subprocess.run([self.bash, "-euo", "pipefail", "-c", setup + "\n" + found[name]],
                           cwd=self.work, env=env, capture_output=True, text=True, timeout=600,
                           check=False)
        self.assertEqual(p.returncode, 0, f"{doc} recipe {name}:\n{p.stdout}\n{p.stderr}")
        self.assertGreater(self.users_ok(), before,
                           f"{doc} recipe {name} did not reach Okta through the sidecar:\n"
                           f"{p.stdout}\n{p.stderr}")

    def test_recipes_are_where_the_docs_say(self) -> None:
        for doc, names in EXPECTED.items():
            self.assertLessEqual(names, set(recipes(DOCS[doc])), doc)

    def test_readme_curl(self) -> None:
        self.run_recipe("README.md", "curl")

    def test_curl(self) -> None:
        self.run_recipe("docs/ops-deploy.md", "curl")

    def test_python_requests(self) -> None:
        self.run_recipe("docs/ops-deploy.md", "python-requests")

    def test_node_okta_sdk(self) -> None:
        require_tool("node", "nodejs")
        require_tool("npm", "npm")
        self.run_recipe("docs/ops-deploy.md", "node-okta-sdk")

    def test_node_fetch(self) -> None:
        require_tool("node", "nodejs")
        require_tool("npm", "npm")
        self.run_recipe("docs/ops-deploy.md", "node-fetch")

    def test_every_recipe_runs(self) -> None:
        # A recipe added to the docs later runs too, without a test method of its own.
        covered = {("README.md", "curl"), ("docs/ops-deploy.md", "curl"),
                   ("docs/ops-deploy.md", "python-requests"),
                   ("docs/ops-deploy.md", "node-okta-sdk"), ("docs/ops-deploy.md", "node-fetch")}
        for doc, path in DOCS.items():
            for name in recipes(path):
                if name != "setup" and (doc, name) not in covered:
                    with self.subTest(doc=doc, recipe=name):
                        self.run_recipe(doc, name)


if __name__ == "__main__":
    unittest.main()
