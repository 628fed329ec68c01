"""The web console in a real browser: Debian's chromium, headless, through Playwright.

One kukeond for the module (its unix socket, and a TLS listener with an admin and a
viewer token) and one browser. The admin comes in as a local user does, through the URL
``kukectl ui`` (run as a subprocess) prints with its token; the viewer through the TLS
listener with its token typed into the page. Screenshots of every view go to
``$ARTIFACTS_DIR/ui`` (or the test's tmp directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
import yaml

from kukeon.api import Kind, parse_resource
from kukeon.api.cellset import CellSet
from kukeon.daemon.app import Daemon
from kukeon.runtime.containerd import ContainerdClient, realm_namespace
from kukeon.store import AlreadyExists, Conflict, NotFound
from tests.fixtures.browser import PHONE, IsolatedBrowser, chromium, require_chromium
from tests.fixtures.containerd import BusyboxImage, PrivateContainerd, clean_namespace
from tests.fixtures.etcd import EtcdServer
from tests.fixtures.kukectl import KUKECTL, kukectl
from tests.fixtures.kukeond import Kukeond, kukeond_config, sweep_host
from tests.fixtures.services import free_tcp_port, require_binary, require_root
from tests.integration.controllers.helpers import cell_versions, get_cell

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]
SPACE, STACK = "web", "site"
HOSTILE = '<img src=x onerror="window.pwned=1">'  # a log line is anyone's text
LOOP = (
    f"echo '{HOSTILE}'; "
    'i=0; while :; do i=$((i+1)); echo "tick $i"; [ $i -eq 3 ] && touch /tmp/ready; sleep 1; done'
)


@dataclass
class Console:
    kukeond: Kukeond
    https: str
    forward_url: str
    forward_port: int
    admin_token: str
    viewer_token: str
    browser: IsolatedBrowser
    shots: Path

    def cell_key(self, name: str) -> tuple[str, ...]:
        return (self.kukeond.realm, SPACE, STACK, name)

    async def shot(self, page: Page, name: str) -> None:
        await page.screenshot(path=str(self.shots / f"{name}.png"), full_page=False)


def _artifacts(tmp: Path) -> Path:
    base = Path(os.environ["ARTIFACTS_DIR"]) if os.environ.get("ARTIFACTS_DIR") else tmp
    shots = base / "ui"
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def _certs(directory: Path) -> tuple[Path, Path]:
    require_binary("openssl", "openssl")
    subprocess.run(
        ["bash", str(REPO / "hack" / "make-ca.sh"), "--out", str(directory), "--quiet"],
        check=True,
        capture_output=True,
    )
    return directory / "server.crt", directory / "server.key"


def _tokens(path: Path, admin: str, viewer: str) -> Path:
    entries = [
        {"token": admin, "user": "alice", "role": "admin"},
        {"token": viewer, "user": "vera", "role": "viewer"},
    ]
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return path


async def _hierarchy(k: Kukeond) -> None:
    for document in (
        {"kind": "Realm", "metadata": {"name": k.realm}, "spec": {}},
        {"kind": "Space", "metadata": {"name": SPACE}, "spec": {"realmId": k.realm}},
        {
            "kind": "Stack",
            "metadata": {"name": STACK},
            "spec": {"realmId": k.realm, "spaceId": SPACE},
        },
        {
            "kind": "Secret",
            "metadata": {"name": "api-keys", "realm": k.realm},
            "stringData": {"token": "never-shown-4711", "url": "https://example.invalid"},
        },
    ):
        await k.apply(document)
    await k.wait_for(Kind.STACK, (k.realm, SPACE, STACK), state="Ready")
    assert k.daemon.controllers is not None
    await k.daemon.controllers.images.import_archive(namespace=k.namespace, path=k.image.archive)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(
    tmp_path_factory: pytest.TempPathFactory,
    etcd_server: EtcdServer,
    containerd_daemon: PrivateContainerd,
    containerd_test_image: BusyboxImage,
) -> AsyncIterator[Console]:
    require_root()
    require_chromium()
    require_binary("bridge", "containernetworking-plugins", "/usr/lib/cni", "/opt/cni/bin")
    tmp = tmp_path_factory.mktemp("ui")
    cert, key = _certs(tmp / "pki")
    admin, viewer = secrets.token_hex(16), secrets.token_hex(16)
    port = free_tcp_port()
    config = kukeond_config(
        tmp,
        containerd=containerd_daemon,
        etcd=etcd_server,
        prefix=f"/kukeon-ui-{secrets.token_hex(6)}",
    ).model_copy(
        update={
            "api_address": f"127.0.0.1:{port}",
            "api_tls_cert_file": cert,
            "api_tls_key_file": key,
            "api_tokens_file": _tokens(tmp / "tokens.yaml", admin, viewer),
        }
    )
    daemon = Daemon(config)
    await daemon.start()
    assert daemon.registry is not None
    k = Kukeond(daemon, config, daemon.registry, f"r{secrets.token_hex(3)}", containerd_test_image)
    forward_port = free_tcp_port()
    ui: asyncio.subprocess.Process | None = None
    ui_exit = 0
    try:
        await _hierarchy(k)
        ui, url = await kukectl_ui(config.api_socket, forward_port)
        async with chromium([port, forward_port]) as browser:
            yield Console(
                k,
                f"https://127.0.0.1:{port}",
                url,
                forward_port,
                admin,
                viewer,
                browser,
                _artifacts(tmp),
            )
    finally:
        if ui is not None:
            ui_exit = await stop(ui)
        with contextlib.suppress(Exception):
            await k.registry.delete(Kind.REALM, (k.realm,), cascade=True)
            await k.wait_gone(Kind.REALM, (k.realm,), within=60)
        await daemon.stop()
        client = ContainerdClient(containerd_daemon.address)
        try:
            with contextlib.suppress(Exception):
                await clean_namespace(client, realm_namespace(k.realm, config.instance))
        finally:
            await client.close()
        await sweep_host(config, realm=k.realm, spaces=[SPACE])
        shutil.rmtree(tmp / "state", ignore_errors=True)
    assert ui_exit == 0, f"kukectl ui did not stop cleanly on SIGTERM: {ui_exit}"


async def kukectl_ui(socket: Path, port: int) -> tuple[asyncio.subprocess.Process, str]:
    """``kukectl ui --port PORT`` as a user runs it, and the URL it prints."""
    env = {**os.environ, "KUKEON_SERVER": f"unix://{socket}"}
    process = await asyncio.create_subprocess_exec(
        KUKECTL, "ui", "--port", str(port), env=env, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            while line := (await process.stdout.readline()).decode():
                if line.strip().startswith("http://"):
                    return process, line.strip()
    except BaseException:
        await stop(process)
        raise
    await stop(process)
    raise AssertionError("kukectl ui printed no URL")


async def stop(process: asyncio.subprocess.Process) -> int:
    """Ctrl-C's SIGTERM twin; its exit code (SIGKILL's after 10 s)."""
    if process.returncode is None:
        process.terminate()
    try:
        async with asyncio.timeout(10):
            return await process.wait()
    except TimeoutError:
        process.kill()
        return await process.wait()


def cell_document(realm: str, name: str, image: str) -> dict[str, Any]:
    probe = {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1}
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": name, "labels": {"app": "ticker"}},
        "spec": {
            "realmId": realm,
            "spaceId": SPACE,
            "stackId": STACK,
            "containers": [
                {
                    "id": "main",
                    "image": image,
                    "command": "sh",
                    "args": ["-c", LOOP],
                    "readinessProbe": probe,
                }
            ],
        },
    }


async def ticker(c: Console) -> None:
    """The cell the tests watch (created by the first test that needs it)."""
    k = c.kukeond
    with contextlib.suppress(AlreadyExists):
        await k.registry.create(parse_resource(cell_document(k.realm, "ticker", k.image.name)))


async def signed_in(c: Console, token: str) -> Page:
    """A tab on the TLS listener, signed in by typing ``token`` into the page."""
    page = await c.browser.context.new_page()
    await page.goto(f"{c.https}/ui/")
    await page.locator("#token").fill(token)
    await page.locator("#login button[type=submit]").click()
    await page.locator("#whoami").wait_for()
    return page


async def login_page(c: Console) -> None:
    from playwright.async_api import expect

    page = await c.browser.context.new_page()
    await page.goto(f"{c.https}/ui/")
    await expect(page.locator("#login")).to_be_visible()
    await c.shot(page, "login")
    # A link with a token on the TLS listener is whoever made it's: not taken (it signed
    # the reader in as them); only kukectl ui's forward on 127.0.0.1 hands one in the URL.
    await page.goto(f"{c.https}/ui/#token={c.viewer_token}")
    await page.reload()
    await expect(page.locator("#login")).to_be_visible()
    assert "token" not in page.url
    assert await page.evaluate("sessionStorage.getItem('kukeon.token')") is None
    await page.close()


async def viewer_tab(c: Console) -> Page:
    from playwright.async_api import expect

    viewer = await signed_in(c, c.viewer_token)
    await expect(viewer.locator("#whoami")).to_have_text("vera · viewer")
    await expect(viewer.locator("#tree-summary")).to_contain_text("1 realms")
    await viewer.evaluate("window.kukeonMarker = 'no reload'")
    return viewer


async def pending_then_ready(c: Console, viewer: Page) -> None:
    from playwright.async_api import expect

    k = c.kukeond
    row = viewer.locator(f'.row.cell[data-key="{k.realm}/{SPACE}/{STACK}/ticker"]')
    await expect(row.locator(".badge")).to_have_text("Pending", timeout=20_000)
    await c.shot(viewer, "tree-pending")
    await expect(row.locator(".badge")).to_have_text("Ready", timeout=60_000)
    await expect(row.locator(".ready")).to_have_text("1/1")
    assert await viewer.evaluate("window.kukeonMarker") == "no reload"
    await c.shot(viewer, "tree")

    # The viewer's cell page: no button that would be refused; forced, the API says 403.
    await row.locator("a.name").click()
    await expect(viewer.locator(".cell-head .badge")).to_have_text("Ready")
    await expect(viewer.locator(".role-note")).to_have_text("read only (viewer)")
    await c.shot(viewer, "cell-viewer")
    assert await viewer.locator("#action-stop, #action-restart, #action-delete").count() == 0
    path = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/spaces/{SPACE}/stacks/{STACK}/cells/ticker"
    forced = await viewer.evaluate(
        """async (path) => (await fetch(path, {method: 'PATCH',
             headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('kukeon.token'),
                       'Content-Type': 'application/merge-patch+json'},
             body: JSON.stringify({spec: {desiredState: 'Stopped'}})})).status""",
        path,
    )
    assert forced == 403
    # Nor an Apply view: the server validates a manifest by writing it with dryRun=All,
    # which is refused to a viewer as the write itself is (its Validate was a 403 each).
    await expect(viewer.locator("#nav-apply")).to_be_hidden()
    await viewer.keyboard.press("a")
    assert "#/apply" not in viewer.url
    dry_run = await viewer.evaluate(
        """async (path) => (await fetch(path + '?dryRun=All', {method: 'POST',
             headers: {'Authorization': 'Bearer ' + sessionStorage.getItem('kukeon.token'),
                       'Content-Type': 'application/json'},
             body: JSON.stringify({apiVersion: 'kukeon.io/v1beta1', kind: 'Cell',
                                   metadata: {name: 'tried'}, spec: {}})})).status""",
        path.rsplit("/", 1)[0],
    )
    assert dry_run == 403
    await viewer.goto(f"{c.https}/ui/#/apply")
    await expect(viewer.locator("#apply-read-only")).to_contain_text("read only (viewer)")
    assert await viewer.locator("#manifest, #validate, #apply").count() == 0
    await viewer.close()


async def test_login_tree_live_and_viewer_has_no_buttons(console: Console) -> None:
    c = console
    await c.browser.run(login_page(c))
    viewer = await c.browser.run(viewer_tab(c))
    await ticker(c)  # created while the viewer's tree is open
    await c.browser.run(pending_then_ready(c, viewer))


async def admin_scenario(c: Console) -> None:
    from playwright.async_api import expect

    k = c.kukeond
    page = await c.browser.context.new_page()
    assert c.forward_url.startswith(f"http://127.0.0.1:{c.forward_port}/ui/#token=")
    await page.goto(c.forward_url)  # as kukectl ui printed it
    await expect(page.locator("#whoami")).to_have_text("unix-socket · admin")
    assert "token" not in page.url  # moved into sessionStorage, out of the address bar
    cell = f"#/cell/{k.realm}/{SPACE}/{STACK}/ticker"
    await page.goto(f"http://127.0.0.1:{c.forward_port}/ui/{cell}")
    await expect(page.locator(".cell-head .badge")).to_have_text("Ready", timeout=60_000)
    log = page.locator("#log")
    await expect(log).to_contain_text("tick ")
    await expect(log).to_contain_text(HOSTILE)  # shown as text, never run
    assert await page.evaluate("window.pwned") is None
    assert await log.locator("img").count() == 0
    last = int((await log.inner_text()).strip().splitlines()[-1].split()[-1])
    await expect(log).to_contain_text(f"tick {last + 1}\n", timeout=10_000)
    await expect(page.locator("#events li").first).to_be_visible(timeout=10_000)
    # The Events' selector escapes the names it takes from the address (a crafted
    # "#/cell/.../web,type=Normal" added a term of its own).
    escaped = await page.evaluate(
        "import('/ui/static/js/api.js').then((api) => api.fieldValue('web,type=Normal\\\\'))"
    )
    assert escaped == "web\\,type\\=Normal\\\\"
    await expect(page.locator("#usage")).to_contain_text("memory", timeout=10_000)
    await c.shot(page, "cell")

    await page.locator("#action-stop").click()
    await expect(page.locator(".cell-head .badge")).to_have_text("Stopped", timeout=30_000)
    await c.shot(page, "cell-stopped")
    await page.locator("#action-start").click()
    await expect(page.locator(".cell-head .badge")).to_have_text("Ready", timeout=30_000)

    await sets_scale(c, page)
    await page.keyboard.press("n")
    await expect(page.locator("main h1")).to_have_text("Nodes")
    await expect(page.locator("main tbody tr").first).to_contain_text(k.config.node_name)
    await c.shot(page, "nodes")
    await page.keyboard.press("s")
    await expect(page.locator("main tbody")).to_contain_text("api-keys")
    await expect(page.locator("main tbody")).to_contain_text("token")
    assert "never-shown-4711" not in await page.content()
    await c.shot(page, "secrets")
    await page.keyboard.press("/")
    await page.keyboard.type("tick")
    await page.keyboard.press("Enter")
    await expect(page.locator("main tbody")).to_contain_text(f"{k.realm}/{SPACE}/{STACK}/ticker")
    await c.shot(page, "search")
    await page.close()


async def pool_set(c: Console) -> None:
    """A cell set of one cell, for the sets view (made in the test's loop, not the
    browser's)."""
    k = c.kukeond
    cell = cell_document(k.realm, "pool", k.image.name)
    template = {"metadata": {"labels": {"app": "pool"}}, "spec": cell["spec"]}
    template["spec"] = {"containers": cell["spec"]["containers"]}
    document = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "CellSet",
        "metadata": {"name": "pool"},
        "spec": {
            "realmId": k.realm,
            "spaceId": SPACE,
            "stackId": STACK,
            "replicas": 1,
            "selector": {"matchLabels": {"app": "pool"}},
            "template": template,
        },
    }
    with contextlib.suppress(AlreadyExists):
        await k.registry.create(parse_resource(document))


async def sets_scale(c: Console, page: Page) -> None:
    """The cell sets view: counts and cells live; scaled from the page, as kukectl scale."""
    from playwright.async_api import expect

    k = c.kukeond
    await page.keyboard.press("c")
    await expect(page.locator("main h1")).to_have_text("Cell sets")
    row = page.locator(f'tr[data-set="{k.realm}/{SPACE}/{STACK}/pool"]')
    await expect(row.locator("td").nth(1)).to_have_text("1/1", timeout=60_000)
    await row.locator("input.replicas").fill("2")
    await row.get_by_role("button", name="Scale").click()
    await expect(row.locator("td").nth(1)).to_have_text("2/2", timeout=60_000)
    await expect(row.locator("summary")).to_have_text("2 cells")
    await c.shot(page, "sets")


async def test_admin_follows_log_stops_and_starts(console: Console) -> None:
    await ticker(console)
    await pool_set(console)
    await console.browser.run(admin_scenario(console))


async def apply_over_a_running_cell(c: Console, page: Page) -> None:
    """The ticker (made without an apply) pasted as written is `configured`: the apply's
    record is all it writes. A label `kukectl label` adds then survives the same paste,
    `unchanged` (before, the console's two-way rule wrote the manifest's labels over it);
    with a label added the paste is `configured` (the test checks that the cell never lost
    its node meanwhile, and that both labels are there)."""
    from playwright.async_api import expect

    k = c.kukeond
    document = cell_document(k.realm, "ticker", k.image.name)
    results = page.locator("#apply-results")
    await page.locator("#manifest").fill(yaml.safe_dump(document))
    await page.locator("#apply").click()
    await expect(results).to_contain_text("Cell ticker configured")
    scope = ("--realm", k.realm, "--space", SPACE, "--stack", STACK)
    code, _, err = await kukectl(k, "label", "cell", "ticker", "owner=ops", *scope)
    assert code == 0, err
    await page.locator("#apply").click()
    await expect(results).to_contain_text("Cell ticker unchanged")
    document["metadata"]["labels"]["seen-by"] = "console"
    await page.locator("#manifest").fill(yaml.safe_dump(document))
    await page.locator("#apply").click()
    await expect(results).to_contain_text("Cell ticker configured")


async def created_with_its_record(c: Console, manifest: str) -> None:
    """kukectl's apply of a manifest the console created finds the console's record: the
    same manifest is `unchanged` (without a record it was a first apply, `configured`)."""
    code, out, err = await kukectl(c.kukeond, "apply", "-f", "-", stdin=manifest.encode())
    assert (code, out.strip()) == (0, "cell/doomed unchanged"), err


async def apply_scenario(c: Console) -> None:
    from playwright.async_api import expect

    k = c.kukeond
    page = await signed_in(c, c.admin_token)
    await page.keyboard.press("a")
    await apply_over_a_running_cell(c, page)
    manifest = f"""apiVersion: kukeon.io/v1beta1
kind: Cell
metadata: {{name: broken}}
spec:
  realmId: {k.realm}
  spaceId: {SPACE}
  stackId: {STACK}
  containers:
    - id: main
      image: {k.image.name}
      restartPolicy: sometimes
"""
    await page.locator("#manifest").fill(manifest)
    await page.locator("#apply").click()
    results = page.locator("#apply-results")
    await expect(results.locator("code.field")).to_contain_text("spec.containers[0].restartPolicy")
    await c.shot(page, "apply-errors")

    # A valid one is written; then deleted from its page, after the confirmation.
    stopped = manifest.replace("broken", "doomed").replace("restartPolicy: sometimes", "")
    await page.locator("#manifest").fill(
        stopped.replace("  containers:", "  desiredState: Stopped\n  containers:")
    )
    await page.locator("#apply").click()
    await expect(results).to_contain_text("Cell doomed created")
    await created_with_its_record(c, await page.locator("#manifest").input_value())
    await page.goto(f"{c.https}/ui/#/cell/{k.realm}/{SPACE}/{STACK}/doomed")
    await page.locator("#action-delete").click()
    await page.locator("dialog.confirm #confirm-yes").click()
    await expect(page.locator("main h1")).to_have_text("Fleet")
    await expect(page.locator(".tree .group.depth3")).to_have_count(1)  # the tree is drawn
    await expect(page.locator('.row.cell[data-key$="/doomed"]')).to_have_count(0)
    # The phone-width tree, dark.
    await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    await page.emulate_media(color_scheme="dark")
    await page.keyboard.press("t")
    await expect(page.locator(".row.cell").first).to_be_visible()
    await c.shot(page, "tree-phone-dark")
    await page.close()


async def test_apply_shows_errors_by_field_path(console: Console) -> None:
    """Also: Apply over a running cell writes what kukectl apply writes. It PUT the pasted
    document as it was, which cleared the nodeName the scheduler had set: the running cell
    was unscheduled, stopped and started again; then it merged two ways and recorded
    nothing, so a label `kukectl label` added was gone at the next paste."""
    await ticker(console)  # the phone-width tree shows it
    k = console.kukeond
    key = (k.realm, SPACE, STACK, "ticker")
    cell = await k.wait_for(Kind.CELL, key, until=lambda found: bool(found.spec.node_name))
    nodes: list[str | None] = []
    since = int(cell.metadata.resource_version or 0)
    async with cell_versions(k, key, lambda seen: nodes.append(seen.spec.node_name), since=since):
        await console.browser.run(apply_scenario(console))
        labelled = await get_cell(k, key)
    assert labelled.metadata.labels.get("seen-by") == "console"
    assert labelled.metadata.labels.get("owner") == "ops"  # kukectl label's, kept
    assert labelled.spec.node_name == cell.spec.node_name
    assert None not in nodes, nodes


async def set_page_opened(c: Console) -> Page:
    """The viewer opens the pool set's page from the cell sets list: its spec and counts,
    conditions, cells (linked, with their template's hash), revisions and Events."""
    from playwright.async_api import expect

    k = c.kukeond
    key = f"{k.realm}/{SPACE}/{STACK}/pool"
    page = await signed_in(c, c.viewer_token)
    await page.keyboard.press("c")
    await page.locator(f'tr[data-set="{key}"] th a').click()
    await expect(page.locator("main h1")).to_have_text("pool")
    assert page.url.endswith(f"#/set/{key}")
    summary = page.locator("#set-summary")
    await expect(summary).to_contain_text("desired")
    await expect(summary).to_contain_text("RollingUpdate (max surge 25%, max unavailable 25%)")
    await expect(summary).to_contain_text("app=pool")
    current = (await summary.locator("code").inner_text()).strip()
    assert len(current) == 8, current
    await expect(page.locator("#set-conditions")).to_contain_text("Progressing")
    await expect(page.locator("#set-conditions")).to_contain_text("Available")
    cells = page.locator("#set-cells tbody tr")
    await expect(cells.first).to_contain_text(f"{current} current", timeout=30_000)
    await expect(cells.first).to_contain_text(k.config.node_name)
    revision = page.locator("#set-revisions tbody tr")
    await expect(revision.first.locator("th")).to_have_text("1")
    await expect(revision.first).to_contain_text(current)
    events = page.locator("#set-events tbody")
    await expect(events).to_contain_text("SuccessfulCreate", timeout=30_000)
    await expect(events).to_contain_text("created cell pool-")
    # Read only: nothing on the page writes (a viewer's writes are 403 anyway).
    assert await page.locator("main button, main input, main select, main textarea").count() == 0
    await c.shot(page, "cellset-viewer")
    return page


async def set_page_follows(c: Console, page: Page, cells: int) -> None:
    """Scaled down by one while the page is open: a SuccessfulDelete appears, a cell goes."""
    from playwright.async_api import expect

    await expect(page.locator("#set-events tbody")).to_contain_text(
        "SuccessfulDelete", timeout=30_000
    )
    await expect(page.locator("#set-cells tbody tr")).to_have_count(cells - 1, timeout=60_000)
    await expect(page.locator("#set-summary")).to_contain_text(f"{cells - 1} desired")
    row = page.locator("#set-cells tbody tr").first if cells > 1 else None
    if row is not None:
        await row.locator("th a").click()
        await expect(page.locator(".cell-head .badge")).to_be_visible()
        assert "#/cell/" in page.url
    await page.close()


async def scale_pool(k: Kukeond, replicas: int) -> None:
    for _ in range(10):
        found = await k.registry.get(Kind.CELL_SET, (k.realm, SPACE, STACK, "pool"))
        assert isinstance(found, CellSet)
        spec = found.spec.model_copy(update={"replicas": replicas})
        with contextlib.suppress(Conflict):
            await k.registry.update(found.model_copy(update={"spec": spec}))
            return
    raise AssertionError("the pool set kept changing under the update")


async def test_cellset_page_live_and_read_only(console: Console) -> None:
    c = console
    k = c.kukeond
    await pool_set(c)
    found = await k.registry.get(Kind.CELL_SET, (k.realm, SPACE, STACK, "pool"))
    assert isinstance(found, CellSet)
    replicas = found.spec.replicas
    page = await c.browser.run(set_page_opened(c))
    await scale_pool(k, replicas - 1)
    await c.browser.run(set_page_follows(c, page, replicas))


# What a realm's tenant writes and the admin's console shows: each field a payload that
# would run if the page took it as HTML (the Content-Security-Policy would still refuse
# it: a securitypolicyviolation listener says whether anything tried).
PAYLOAD = '<img src=x onerror="window.pwned=1"></pre></script><script>window.pwned=2</script>'
NO_SPACES = "<svg/onload=window.pwned=3>"
NO_SLASH = '<img src=x onerror="window.pwned=4"><script>window.pwned=5'
"""A command with a '/' is a path: runc's error for it is another."""
LONG_LINE = 200_000
"""A log line this long has no newline for 200,000 bytes: shown cut, not held whole."""
HOSTILE_LOG = (
    f"printf '\\033[31m%s\\033[0m\\n' '{PAYLOAD}'; "
    f"head -c {LONG_LINE} /dev/zero | tr '\\0' a; echo; echo after-the-long-line; sleep 3600"
)
WATCH_CSP = """window.__violations = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`));"""
INJECTED = """() => ({
  elements: [...document.querySelectorAll('main img, main svg, main script, main iframe,'
      + ' main object, main embed, main a[href^="javascript"]')].map((e) => e.outerHTML),
  handlers: [...document.querySelectorAll('main *')]
    .flatMap((e) => [...e.attributes].filter((a) => a.name.startsWith('on')).map((a) => a.name)),
  pwned: window.pwned === undefined ? null : String(window.pwned),
  violations: window.__violations,
})"""


def hostile_cell(realm: str, image: str, name: str) -> dict[str, Any]:
    """``hostile``: its log, probe path, env and an annotation; ``hostile-cmd``: a command
    that comes back in the cell's status message and a Failed Event."""
    if name == "hostile-cmd":
        containers: list[dict[str, Any]] = [{"id": "bad", "image": image, "command": NO_SLASH}]
    else:
        probe = {"httpGet": {"path": f"/{NO_SPACES}", "port": 9}, "periodSeconds": 1}
        containers = [
            {
                "id": "main",
                "image": image,
                "command": "sh",
                "args": ["-c", HOSTILE_LOG],
                "env": [f"NOTE={PAYLOAD}"],
                "readinessProbe": probe,
            }
        ]
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": name, "annotations": {"note": f"{PAYLOAD} {{{{7*7}}}}"}},
        "spec": {"realmId": realm, "spaceId": SPACE, "stackId": STACK, "containers": containers},
    }


async def hostile_views(c: Console) -> None:
    from playwright.async_api import expect

    k = c.kukeond
    page = await c.browser.context.new_page()
    await page.add_init_script(WATCH_CSP)
    await page.goto(f"{c.https}/ui/")
    await page.locator("#token").fill(c.admin_token)
    await page.locator("#login button[type=submit]").click()
    await page.locator("#whoami").wait_for()
    await page.goto(f"{c.https}/ui/#/cell/{k.realm}/{SPACE}/{STACK}/hostile-cmd")
    await expect(page.locator(".facts")).to_contain_text("CommandNotFound", timeout=60_000)
    await expect(page.locator(".facts")).to_contain_text(NO_SLASH)
    await expect(page.locator("#events")).to_contain_text(NO_SLASH, timeout=30_000)
    # A link with a malformed escape opens its page (the name as written, not found);
    # decoding it threw, and the page kept the previous view under the new address.
    await page.goto(f"{c.https}/ui/#/cell/{k.realm}/{SPACE}/{STACK}/%E0%A4%A")
    await expect(page.locator(".cell-head .badge")).to_have_text("Not found")
    await expect(page.locator("main p code")).to_have_text(f"{k.realm}/{SPACE}/{STACK}/%E0%A4%A")
    # A link's text is never the page's heading (a crafted link titled the page with a
    # sentence of its own): a page's heading is a fixed word, or the name of what was read.
    said = "Your session expired: sign in again at https://elsewhere.example"
    for view, heading in (("cell", "Cell"), ("set", "Cell set")):
        await page.goto(f"{c.https}/ui/#/{view}/{k.realm}/{SPACE}/{STACK}/{said}")
        await expect(page.locator(".cell-head .badge")).to_have_text("Not found")
        await expect(page.locator("main h1")).to_have_text(heading)
        await expect(page.locator("main p code")).to_contain_text(said)
    await page.goto(f"{c.https}/ui/#/search/{said}")
    await expect(page.locator("main h1")).to_have_text("Search")
    await expect(page.locator("#search")).to_have_value(said)
    await expect(page.locator("main")).to_contain_text("Nothing matches.")
    await page.goto(f"{c.https}/ui/#/cell/{k.realm}/{SPACE}/{STACK}/hostile-cmd")
    await expect(page.locator(".cell-head h1")).to_have_text("hostile-cmd")
    await page.goto(f"{c.https}/ui/#/cell/{k.realm}/{SPACE}/{STACK}/hostile")
    spec = page.locator("#spec")
    await expect(spec).to_contain_text("NOTE=<img src=x onerror=")
    await expect(spec).to_contain_text("{{7*7}}")
    await expect(spec).to_contain_text(NO_SPACES)
    # The probe's message names the path it asked for.
    await expect(page.locator("main table")).to_contain_text(NO_SPACES, timeout=30_000)
    log = page.locator("#log")
    await expect(log).to_contain_text("after-the-long-line", timeout=30_000)
    text = await log.inner_text()
    assert f"\x1b[31m{PAYLOAD}\x1b[0m" in text  # as printed, escapes and all
    # The long line is shown cut (kept whole, a line without end took the tab's memory).
    assert len(text) < 20_000, len(text)
    assert "the rest of this line" in text
    await page.keyboard.press("/")
    await page.keyboard.type("hostile")
    await page.keyboard.press("Enter")
    await expect(page.locator("main tbody")).to_contain_text("hostile-cmd")
    await page.keyboard.press("Escape")  # out of the search field
    await page.keyboard.press("a")
    await page.locator("#manifest").fill(f"kind: '{PAYLOAD}'\n")
    await page.locator("#validate").click()
    await expect(page.locator("#apply-results")).to_contain_text(PAYLOAD[:50])
    found = await page.evaluate(INJECTED)
    assert found == {"elements": [], "handlers": [], "pwned": None, "violations": []}, found
    # A string put into the page as markup is refused (Trusted Types): a slip throws.
    sink = "() => { try { document.createElement('p').innerHTML = '<b>x</b>'; return 'taken'; }"
    sink += " catch (error) { return error.name; } }"
    assert await page.evaluate(sink) == "TypeError"
    await page.close()


async def test_a_tenants_text_shows_as_text_in_the_admins_console(console: Console) -> None:
    k = console.kukeond
    for name in ("hostile-cmd", "hostile"):
        with contextlib.suppress(AlreadyExists):
            await k.registry.create(parse_resource(hostile_cell(k.realm, k.image.name, name)))
    await console.browser.run(hostile_views(console))


# Another site's page, open in the same browser while the admin is signed in (through
# the forward) in another tab: the browser sends what it lets any page send, and nothing
# changes. Chromium's own Local Network Access check would stop most of it before it
# left the browser, so the page is granted that permission: what is tested is kukeond's
# and the forward's answer (no CORS, no cookie, the token only in a header a page cannot
# set on another origin, the forward's Origin check, frame-ancestors, COOP), which other
# browsers rely on alone.
OTHER_ORIGIN = "http://127.0.0.1:9"
"""Another site: its page is handed to the browser by the test, no server behind it."""
OTHER_PAGE = """<!doctype html><title>another site</title>
<form id="form" method="POST" enctype="text/plain"></form>
<script>
window.attempt = async ({ servers, cell, cells, body }) => {
  const seen = {};
  const settle = (sent) => sent.then((value) => value, (error) => `refused: ${error.name}`);
  const post = { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' }, body };
  for (const [name, base] of Object.entries(servers)) {
    const at = base + cell;
    seen[`${name} DELETE`] = await settle(fetch(at, { method: 'DELETE' }).then((r) => r.status));
    seen[`${name} GET`] = await settle(fetch(at).then((r) => r.status));
    seen[`${name} POST no-cors`] = await settle(fetch(base + cells, post).then((r) => r.type));
    seen[`${name} exec`] = await new Promise((resolve) => {
      const socket = new WebSocket(`${at.replace(/^http/, 'ws')}/exec?container=main&command=id`);
      socket.onopen = () => resolve('open');
      socket.onclose = () => resolve('closed');
    });
    const frame = document.createElement('iframe');
    frame.name = name;
    frame.src = `${base}/ui/`;
    await new Promise((resolve) => {
      frame.onload = resolve;
      setTimeout(resolve, 10000);
      document.body.append(frame);
    });
  }
  const opened = window.open(`${servers.forward}/ui/#/tree`);
  await new Promise((resolve) => { setTimeout(resolve, 1000); });
  seen.opened = opened === null || opened.closed ? 'severed' : 'reachable';
  return seen;
};
</script>"""


async def another_sites_page(c: Console, body: str) -> tuple[dict[str, Any], list[str], str]:
    k = c.kukeond
    admin = await c.browser.context.new_page()
    await admin.goto(c.forward_url)
    await admin.locator("#whoami").wait_for()
    await c.browser.context.grant_permissions(["local-network-access"], origin=OTHER_ORIGIN)
    page = await c.browser.context.new_page()
    said: list[str] = []
    page.on("console", lambda message: said.append(message.text))
    await page.route(
        f"{OTHER_ORIGIN}/**", lambda route: route.fulfill(body=OTHER_PAGE, content_type="text/html")
    )
    await page.goto(f"{OTHER_ORIGIN}/")
    base = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/spaces/{SPACE}/stacks/{STACK}"
    servers = {"tls": c.https, "forward": f"http://127.0.0.1:{c.forward_port}"}
    seen = await page.evaluate(
        "(what) => window.attempt(what)",
        {
            "servers": servers,
            "cell": f"{base}/cells/ticker",
            "cells": f"{base}/cells",
            "body": body,
        },
    )

    def framed() -> list[str]:
        return [
            base
            for base in servers.values()
            if not any(
                line.startswith(f"Framing '{base}/' violates") and "frame-ancestors 'none'" in line
                for line in said
            )
        ]

    for _ in range(50):  # the console's messages arrive apart from evaluate's answer
        if not framed():
            break
        await page.wait_for_timeout(100)
    # A form's POST is a top-level navigation: no preflight, no CORS; the answer is shown.
    form = (
        "([action, body]) => { const form = document.getElementById('form'); form.action = action;"
    )
    form += " const field = document.createElement('input'); field.name = body; form.append(field);"
    form += " form.submit(); }"
    async with page.expect_navigation():
        await page.evaluate(form, [f"{servers['forward']}{base}/cells", body])
    answer = await page.locator("body").inner_text()
    await page.close()
    await admin.close()
    return seen, framed(), answer


async def test_another_sites_page_changes_nothing(console: Console) -> None:
    c = console
    k = c.kukeond
    await ticker(c)
    forged = cell_document(k.realm, "forged", k.image.name)
    seen, framed, answer = await c.browser.run(another_sites_page(c, json.dumps(forged)))
    assert seen == {
        "tls DELETE": "refused: TypeError",  # its preflight gets no CORS answer
        "tls GET": "refused: TypeError",
        "tls POST no-cors": "opaque",  # sent (a simple request), answered 401: no token
        "tls exec": "closed",  # 401: a page cannot put the token on a WebSocket
        "forward DELETE": "refused: TypeError",
        "forward GET": "refused: TypeError",
        "forward POST no-cors": "opaque",  # sent, answered 403: not the forward's Origin
        "forward exec": "closed",
        "opened": "severed",  # Cross-Origin-Opener-Policy: no handle on the console's tab
    }, seen
    assert framed == [], f"framed by another site: {framed}"  # frame-ancestors 'none'
    assert "Forbidden: a request from the web page at 'http://127.0.0.1:9'" in answer, answer
    with pytest.raises(NotFound):
        await k.registry.get(Kind.CELL, (k.realm, SPACE, STACK, "forged"))
    assert await k.registry.get(Kind.CELL, (k.realm, SPACE, STACK, "ticker")) is not None
