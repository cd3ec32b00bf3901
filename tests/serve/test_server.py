"""``sid serve``: a real server on a free loopback port, driven by a real HTTP client (httpx)."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from conftest import BATCH, BEAMS, ROOT, TOP_K

pytestmark = pytest.mark.slow
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    tok = tmp_path_factory.mktemp("tok") / "token"
    tok.write_text(TOKEN + "\n")
    port = free_port()
    args = ["serve", "--from", str(tiny_run), "--port", str(port), "--num-beams", str(BEAMS), "--top-k", str(TOP_K),
            "--max-batch", str(BATCH), "--batch-buckets", f"1,{BATCH}", "--max-wait-ms", "20", "--max-queue", "8",
            "--max-users", "6", "--max-history", "10", "--max-body-bytes", "4096", "--token-file", str(tok)]
    env = {**os.environ, "SID_STRICT_PLUGINS": "1", "JAX_PLATFORMS": "cpu"}
    log = tmp_path_factory.mktemp("log") / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "sidcore.cli", *args], cwd=ROOT, env=env, stdout=fh,
                                stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    statuses = []
    deadline = time.time() + 240
    while time.time() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            r = client.get("/readyz", headers=AUTH)
            statuses.append(r.status_code)
            if r.status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    assert statuses and statuses[-1] == 200, log.read_text()[-3000:]
    assert set(statuses[:-1]) <= {503}  # not ready until compiled: 503, never an answer
    yield proc, client, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    client.close()


def post(client, body, **kw):
    return client.post("/v1/recommend", json=body, headers={**AUTH, **kw.pop("headers", {})}, **kw)


def test_answers_equal_recommend_and_eval(server, recommender, eval_rows):
    """Concurrent requests (dynamic batching) return what `sid recommend` and the eval decoder return."""
    _, client, _ = server
    users = [{"user_id": f"u{i}", "history_item_sid": h} for i, (h, _) in enumerate(eval_rows)]
    with cf.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda u: post(client, u), users))
    assert [a.status_code for a in answers] == [200] * len(users)
    want = recommender.recommend([recommender.parse(u) for u in users])  # the recommend path, in process
    for a, w, (_, predicted) in zip(answers, want, eval_rows):
        got = a.json()
        assert got["user_id"] == w["user_id"]
        assert [it["item_id"] for it in got["items"]] == [it["item_id"] for it in w["items"]]
        assert [it["sid"] for it in got["items"]] == predicted[:TOP_K]  # the eval decoder's beams
        for g, x in zip(got["items"], w["items"]):  # batch 1 vs 4 may differ in float rounding only
            assert g["score"] == pytest.approx(x["score"], rel=1e-5, abs=1e-5)
            assert g["title"] == x["title"]
    many = post(client, {"users": users[:5]})
    assert many.status_code == 200 and [r["user_id"] for r in many.json()["results"]] == [f"u{i}" for i in range(5)]
    metrics = client.get("/metrics", headers=AUTH).text
    assert "sid_batch_users_count" in metrics and "sid_decoder_calls_total" in metrics
    calls = float(next(ln.split()[-1] for ln in metrics.splitlines() if ln.startswith("sid_decoder_calls_total")))
    assert calls < len(users) + 5  # concurrent users shared decoder calls


def test_statuses(server):
    _, client, _ = server
    good = {"history_item_id": ["3466"]}
    cases = [
        (b'{"history_item_id": [3466', 422, "body"),
        ([good], 422, "body"),
        ({"users": [good, "x"]}, 422, "users[1]"),
        ({"history_item_id": ["3466"], "colour": "red"}, 422, "colour"),
        ({"history_item_id": ["3466", "99999"]}, 422, "history_item_id[1]"),
        ({"users": [good, {"history_item_sid": []}]}, 422, "users[1].history_item_sid"),
        ({"history_item_id": "3466"}, 422, "history_item_id"),
        ({"history_item_id": ["3466"], "top_k": BEAMS + 1}, 422, "top_k"),
        ({"users": [good] * 7}, 413, "users"),
        ({"history_item_id": ["3466"] * 11}, 413, "history_item_id"),
        ({"history_item_title": ["x" * 5000]}, 413, "body"),
    ]
    for body, code, field in cases:
        kw = {"content": body, "headers": {**AUTH, "Content-Type": "application/json"}} if isinstance(body, bytes) \
            else {"json": body, "headers": AUTH}
        r = client.post("/v1/recommend", **kw)
        assert (r.status_code, r.json()["field"]) == (code, field), (body, r.text)
        assert r.json()["error"].startswith(field)
    assert client.post("/v1/recommend", json=good).status_code == 401  # no token
    r = client.post("/v1/recommend", json=good, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/healthz").status_code == 200  # liveness needs no token
    assert "/v1/recommend" in client.get("/openapi.json").json()["paths"]


def test_overload_is_503_with_retry_after(server):
    _, client, _ = server
    body = {"users": [{"history_item_id": [str(3466 - i)]} for i in range(6)]}  # 6 users; the queue holds 8
    with cf.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: post(client, body), range(16)))
    codes = [a.status_code for a in answers]
    assert set(codes) == {200, 503}, codes
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "overloaded" in busy.json()["error"]


def test_no_compiles_after_ready(server):
    """Every request shape (1..6 users, short and long histories, options) reuses the ready-time compiles."""
    _, client, _ = server
    before = client.get("/readyz", headers=AUTH).json()
    for n in (1, 2, 3, 5, 6):
        for hist in (["3466"], [str(100 + i) for i in range(10)]):
            r = post(client, {"users": [{"history_item_id": hist, "top_k": 1 + n % TOP_K,
                                         "exclude_history": n % 2 == 0}] * n})
            assert r.status_code == 200
    after = client.get("/readyz", headers=AUTH).json()
    assert before["compiles"] > 0 and before["shapes"] == [[1, 128], [BATCH, 128]]
    assert (after["compiles"], after["traces"]) == (before["compiles"], before["traces"])


def test_sigterm_drains_then_exits_0(server):
    proc, client, log = server
    body = {"users": [{"history_item_id": [str(3000 + i)]} for i in range(4)]}
    with cf.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(post, client, body) for _ in range(2)]
        time.sleep(0.1)  # both requests are in (queued or decoding)
        proc.send_signal(signal.SIGTERM)
        answers = [f.result() for f in futures]
    assert [a.status_code for a in answers] == [200, 200]
    assert proc.wait(timeout=60) == 0, log.read_text()[-2000:]
    assert "in-flight requests drained" in log.read_text()
    with pytest.raises(httpx.TransportError):
        client.get("/healthz")
