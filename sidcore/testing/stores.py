"""Conformance suite for checkpoint store components (`sidcore.interfaces.CheckpointStore`).

Third-party store authors call `check_store` from their own tests::

    def test_my_store_conforms(tmp_path):
        check_store(lambda: my_store_factory(MyConfig(), uri=str(tmp_path / "ckpt")),
                    uncommit=lambda store, name: (tmp_path / "ckpt" / f"{name}.marker").unlink())

`make_store()` must return a store on the *same*, initially empty location on every call (the
suite checks that a second instance sees what the first saved). Every check raises
`AssertionError` with a message saying what the contract requires.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from sidcore.errors import CheckpointError
from sidcore.interfaces import CheckpointStore

__all__ = ["assert_trees_equal", "check_store", "sample_tree"]

MakeStore = Callable[[], CheckpointStore]
Hook = Callable[[CheckpointStore, str], None]


def sample_tree(seed: int = 0) -> dict[str, Any]:
    """A small mixed pure-dict tree: float32, bfloat16, ints, bool, 0-d, empty, nested, a python int."""
    import ml_dtypes

    rng = np.random.default_rng(seed)
    return {
        "step": 7 + seed,
        "params": {
            "embed": {"embedding": rng.standard_normal((5, 4)).astype(np.float32)},  # [V, D]
            "layers": {
                "0": {"w": rng.standard_normal((4, 4)).astype(ml_dtypes.bfloat16)},
                "1": {"w": rng.standard_normal((4, 4)).astype(ml_dtypes.bfloat16)},
            },
            "norm": {"scale": np.ones((4,), np.float32)},
        },
        "extra": {
            "count": np.array(3, np.int64),
            "ids": np.arange(6, dtype=np.int32).reshape(2, 3),
            "mask": np.array([True, False]),
            "bytes": np.arange(4, dtype=np.uint8),
            "empty": np.zeros((0, 3), np.float32),
        },
    }


def assert_trees_equal(got: Any, want: Any, path: str = "") -> None:
    """Exact equality of two pure-dict trees (keys, dtypes, shapes, bytes)."""
    if isinstance(want, Mapping):
        assert isinstance(got, Mapping), f"{path or '<root>'}: expected a dict, got {type(got).__name__}"
        assert set(got) == set(want), (
            f"{path or '<root>'}: keys {sorted(map(str, got))} != {sorted(map(str, want))}")
        for k in want:
            assert_trees_equal(got[k], want[k], f"{path}/{k}")
    elif isinstance(want, (np.ndarray, np.generic)):
        got_a, want_a = np.asarray(got), np.asarray(want)
        assert got_a.dtype == want_a.dtype, f"{path}: dtype {got_a.dtype} != {want_a.dtype}"
        assert got_a.shape == want_a.shape, f"{path}: shape {got_a.shape} != {want_a.shape}"
        assert got_a.tobytes() == want_a.tobytes(), f"{path}: values differ"
    else:
        assert got == want and type(got) is type(want), f"{path}: {got!r} != {want!r}"


def _wait(store: CheckpointStore) -> None:
    """Let an asynchronous store commit what it started (``wait()`` is part of the contract)."""
    wait = getattr(store, "wait", None)
    assert callable(wait), "a store must have wait() (a no-op for synchronous stores)"
    wait()


def _raises_checkpoint_error(fn: Callable[[], Any], what: str) -> None:
    try:
        fn()
    except CheckpointError as exc:
        text = str(exc)
        assert text and "\n" not in text, f"{what}: CheckpointError message must be one non-empty line"
        return
    raise AssertionError(f"{what}: expected CheckpointError")


def check_store(make_store: MakeStore, *, uncommit: Hook | None = None, corrupt: Hook | None = None,
                check_names: bool = True) -> None:
    """Run the whole store contract against `make_store`.

    Args:
        make_store: returns a store over the same, initially empty location on each call.
        uncommit: removes the commit marker of a saved checkpoint, leaving the payload (simulates a
            crash between payload and marker); enables the "invisible without marker" check.
        corrupt: damages a saved payload in place; enables the "corruption is detected" check.
        check_names: also require `CheckpointError` for names that are not snake_case.
    """
    store = make_store()
    assert isinstance(store.uri, str) and store.uri, "store.uri must be a non-empty string"
    assert isinstance(getattr(store, "sharded", None), bool), \
        "store.sharded must be a bool (False: the kernel saves gathered host trees from process 0)"
    assert callable(getattr(store, "wait", None)), "store.wait() is required (a no-op for synchronous stores)"
    store.wait()  # nothing pending: must return at once
    damaged = store.damaged()
    assert damaged == {}, f"a fresh store has no damaged checkpoints, got {damaged!r}"
    assert store.names() == [], f"a fresh store must list no checkpoints, got {store.names()}"
    _raises_checkpoint_error(lambda: store.restore("last"), "restore of a missing checkpoint")

    tree, meta = sample_tree(0), {"step": 7, "metric": {"ndcg@10": 0.25}, "tag": "x"}
    store.save("last", tree, meta)
    _wait(store)
    assert store.names() == ["last"], f"names() after one save and wait(): {store.names()}"
    got_tree, got_meta = store.restore("last")
    assert_trees_equal(got_tree, tree)
    assert got_meta == meta, f"meta must round-trip as JSON data: {got_meta!r} != {meta!r}"
    assert store.names() == ["last"], f"names() after one save: {store.names()}"
    # params_only keeps only "params"; shardings places those params as jax.Arrays.
    only, _ = store.restore("last", params_only=True)
    assert set(only) == {"params"}, f"restore(params_only=True) returned keys {sorted(only)}"
    assert_trees_equal(only["params"], tree["params"])
    import jax

    placed, _ = store.restore("last", shardings={"embed/embedding": jax.sharding.SingleDeviceSharding(jax.devices()[0])})
    emb = placed["params"]["embed"]["embedding"]
    assert isinstance(emb, jax.Array), f"restore(shardings=...) must return jax.Arrays, got {type(emb).__name__}"
    assert_trees_equal(np.asarray(emb), tree["params"]["embed"]["embedding"], "params/embed/embedding")
    assert isinstance(placed["params"]["norm"]["scale"], np.ndarray), "params not in shardings stay numpy"

    # A second instance over the same location sees the same checkpoints.
    again = make_store()
    assert again.names() == ["last"], "a new store instance on the same URI must see saved checkpoints"
    assert_trees_equal(again.restore("last")[0], tree)

    # Overwrite replaces payload and meta.
    tree2 = sample_tree(1)
    store.save("last", tree2, {"step": 8})
    store.wait()
    got_tree, got_meta = store.restore("last")
    assert_trees_equal(got_tree, tree2)
    assert got_meta == {"step": 8}, "overwriting a name must replace its meta"

    for name in ("best", "step10", "step2"):
        store.save(name, tree, {"name": name})
    _wait(store)
    assert set(store.names()) == {"last", "best", "step10", "step2"}, f"names(): {store.names()}"
    assert store.restore("step2")[1] == {"name": "step2"}

    store.delete("step10")
    assert "step10" not in store.names(), "delete() must remove the name from names()"
    _raises_checkpoint_error(lambda: store.restore("step10"), "restore after delete")

    if check_names:
        for bad in ("", "Last", "../x", "a/b", "step-1"):
            _raises_checkpoint_error(lambda bad=bad: store.save(bad, tree, {}), f"save with name {bad!r}")

    if uncommit is not None:
        store.save("step5", tree, {})
        _wait(store)
        uncommit(store, "step5")
        assert "step5" not in store.names(), "a checkpoint without its commit marker must be invisible"
        _raises_checkpoint_error(lambda: store.restore("step5"), "restore without commit marker")

    if corrupt is not None:
        store.save("step6", tree, {})
        _wait(store)
        corrupt(store, "step6")
        _raises_checkpoint_error(lambda: store.restore("step6"), "restore of a corrupted payload")
