"""The `sasrec` and `semantic` rewards: conformance, and equality with transcriptions of upstream
``rl.py``'s ``cf_reward`` (PyTorch SASRec/GRU ``forward_eval`` + gather) and ``semantic_reward``
(``torch.cosine_similarity``) on fixed weights and embeddings."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import sid_rewards
from sidcore.baselines.checkpoint import save_checkpoint
from sidcore.baselines.config import BaselineConfig
from sidcore.baselines.models import build_model, flat_params, load_flat_params
from sidcore.errors import CheckpointError, ConfigError, DataError
from sidcore.interfaces import RewardGroup
from sidcore.plugins import load_plugins
from sidcore.testing.rewards import check_reward, toy_sids

ITEMS, L = 20, 10
SIDS = toy_sids(ITEMS)


@pytest.fixture(scope="module")
def registry():
    return load_plugins(entry_points=False, extra=[("rewards", sid_rewards)], strict=True).registry


def _build(registry, name, **options):
    spec = registry.get("reward", name)
    return spec.build(spec.config(**options))


def _checkpoint(tmp: Path, name: str = "sasrec", flat=None) -> Path:
    cfg = BaselineConfig(model=name, hidden_factor=8)
    model = build_model(name, item_num=ITEMS, seq_len=L, hidden=8, dropout_rate=0.3, seed=0)
    if flat is not None:
        load_flat_params(model, flat)
    save_checkpoint(tmp, flat_params(model), {"model": name, "options": cfg.to_dict(), "item_num": ITEMS,
                                              "item_sids": SIDS})
    return tmp


def _up():
    path = Path(__file__).resolve().parents[1] / "baselines" / "torch_upstream.py"
    spec = importlib.util.spec_from_file_location("torch_upstream", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("invalid", ["random", "nan"])
def test_sasrec_reward_conforms(registry, tmp_path, invalid):
    reward = _build(registry, "sasrec", checkpoint=str(_checkpoint(tmp_path)), invalid=invalid)
    values = check_reward(reward, sizes=(1, 4))
    for per_group in values.values():
        assert np.isnan(per_group[-1]).all()  # the toy group without history: not applicable
        assert np.isfinite(per_group[0]).all()


@pytest.mark.torch
@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_sasrec_reward_matches_upstream_cf_reward(registry, tmp_path, name):
    torch = pytest.importorskip("torch")
    up = _up()
    torch.manual_seed(0)
    tm = up.UpSASRec(8, ITEMS, L, 0.3) if name == "sasrec" else up.UpGRU(8, ITEMS, L)
    with torch.no_grad():
        for p in tm.parameters():
            p.add_(0.2 * torch.randn_like(p))
    tm.eval()
    flat = {k: v.detach().numpy().copy() for k, v in tm.state_dict().items()}
    reward = _build(registry, "sasrec", checkpoint=str(_checkpoint(tmp_path, name, flat)))
    histories = [(3, 1, 4), tuple(range(10)), (7,), (2, 2, 19, 0)]
    groups = [RewardGroup(sample_id=i, target_sid=SIDS[0], completions=tuple(SIDS[j] + "\n" for j in (5, 0, 11, 19)),
                          scores=np.zeros(4, np.float32), history_items=h) for i, h in enumerate(histories)]
    # upstream: history SIDs -> item2id, right-pad with item_num, forward_eval, gather the predicted items
    item2id = {s: i for i, s in enumerate(SIDS)}
    seq = [[item2id[SIDS[i]] for i in h] + [ITEMS] * (L - len(h)) for h in histories]
    with torch.no_grad():
        pred = tm(torch.tensor(seq), torch.tensor([len(h) for h in histories]))
    for row, grp in zip(pred.numpy(), groups):
        want = row[[item2id[c.strip('\n"')] for c in grp.completions]]
        np.testing.assert_allclose(reward(grp), want, rtol=1e-5, atol=1e-6)


def test_sasrec_reward_invalid_completions(registry, tmp_path):
    path = _checkpoint(tmp_path)
    grp = RewardGroup(sample_id=3, target_sid=SIDS[0], completions=(SIDS[1], "junk", "<a_9><b_9><c_9>"),
                      scores=np.zeros(3, np.float32), history_items=(1, 2))
    rnd = _build(registry, "sasrec", checkpoint=str(path))(grp)
    nan = _build(registry, "sasrec", checkpoint=str(path), invalid="nan")(grp)
    assert rnd[0] == nan[0] and np.isnan(nan[1:]).all() and np.isfinite(rnd).all()
    model = build_model("sasrec", item_num=ITEMS, seq_len=L, hidden=8, dropout_rate=0.3, seed=0)
    logits = np.asarray(model(np.array([[1, 2] + [ITEMS] * 8], np.int32), np.array([2], np.int32)))[0]
    assert set(np.round(rnd[1:], 5)) <= set(np.round(logits, 5))  # a random item's logit, as upstream
    far = RewardGroup(sample_id=0, target_sid=SIDS[0], completions=(SIDS[1],), scores=np.zeros(1, np.float32),
                      history_items=(ITEMS + 5,))
    with pytest.raises(ConfigError, match="outside the checkpoint's catalog"):
        _build(registry, "sasrec", checkpoint=str(path))(far)


def test_sasrec_reward_bad_checkpoint(registry, tmp_path):
    with pytest.raises(ConfigError, match="options.checkpoint is required"):
        _build(registry, "sasrec")
    with pytest.raises(CheckpointError, match="no baseline checkpoint"):
        _build(registry, "sasrec", checkpoint=str(tmp_path))
    path = _checkpoint(tmp_path)
    payload = path / "baseline.msgpack"
    payload.write_bytes(payload.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CheckpointError, match="sha256 differs"):
        _build(registry, "sasrec", checkpoint=str(path))


def _semantic_files(tmp: Path, emb: np.ndarray) -> tuple[Path, Path]:
    info = tmp / "info.txt"
    info.write_text("".join(f"{s}\ttitle {i}\t{i}\n" for i, s in enumerate(SIDS)), encoding="utf-8")
    path = tmp / "emb.npy"
    np.save(path, emb)
    return path, info


def test_semantic_reward_matches_upstream(registry, tmp_path):
    torch = pytest.importorskip("torch")
    emb = np.random.default_rng(0).normal(size=(ITEMS, 6)).astype(np.float32)
    path, info = _semantic_files(tmp_path, emb)
    reward = _build(registry, "semantic", embeddings=str(path), info_file=str(info))
    check_reward(reward, sizes=(1, 4))
    comps = tuple(SIDS[j] + "\n" for j in (0, 3, 17, 8))
    got = reward(RewardGroup(sample_id=0, target_sid=SIDS[2] + "\n", completions=comps, scores=np.zeros(4, np.float32)))
    e = torch.tensor(emb)
    want = torch.cosine_similarity(e[[2] * 4], e[[0, 3, 17, 8]], dim=-1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert reward(RewardGroup(sample_id=0, target_sid=SIDS[2], completions=(SIDS[2],),
                              scores=np.zeros(1, np.float32)))[0] == pytest.approx(1.0)
    bad = reward(RewardGroup(sample_id=0, target_sid=SIDS[2], completions=("junk",), scores=np.zeros(1, np.float32)))
    assert np.isnan(bad).all()


def test_semantic_reward_bad_files(registry, tmp_path):
    with pytest.raises(ConfigError, match="options.embeddings is required"):
        _build(registry, "semantic", info_file="x")
    path, info = _semantic_files(tmp_path, np.zeros((ITEMS - 1, 4), np.float32))
    with pytest.raises(DataError, match="19 rows"):
        _build(registry, "semantic", embeddings=str(path), info_file=str(info))
    np.save(path, np.zeros(ITEMS, np.float32))
    with pytest.raises(DataError, match="expected a float"):
        _build(registry, "semantic", embeddings=str(path), info_file=str(info))
    with pytest.raises(DataError, match="file not found"):
        _build(registry, "semantic", embeddings=str(tmp_path / "none.npy"), info_file=str(info))


def test_rl_prompts_carry_history_items():
    """SID-history and title-history prompts carry their rows' history item ids into RewardGroup;
    title/description -> SID prompts carry none."""
    from sidcore.data.minionerec import bundled_data_dir, read_csv, read_index, read_items, split_paths
    from sidcore.data.rl_tasks import RLExample, rl_records
    from sidcore.rl.step import RLStep

    p = split_paths(bundled_data_dir(), "Industrial_and_Scientific")
    rows = read_csv(p["valid"])[:5]
    recs = rl_records(tasks=("sid_history", "item_to_sid", "title_history"), train_rows=rows,
                      index=read_index(p["index"]), items=read_items(p["items"]), seed=0, title_history_sample=3)
    by_task = {t: [r for r in recs if r.task == t] for t in ("sid_history", "item_to_sid", "title_history")}
    assert [r.history_items for r in by_task["sid_history"]] == [r.history_item_id for r in rows]
    assert all(r.history_items == () for r in by_task["item_to_sid"])
    assert all(r.history_items for r in by_task["title_history"])
    ex = [RLExample(sample_id=0, input_ids=[1], target_sid=rows[0].item_sid, task="sid_history", input_text="",
                    history_items=rows[0].history_item_id)]
    groups = RLStep.groups(None, np.array([["a", "b"]]), np.zeros((1, 2), np.float32), ex)
    assert groups[0].history_items == rows[0].history_item_id


def test_rl_config_builds_the_model_rewards(tmp_path):
    """`rl.rewards` entries with options reach the factories the way an RL run builds them, and a
    misspelt option is a config error naming the entry."""
    from sidcore.config import loading
    from sidcore.run.rl_job import build_rewards

    plugins = load_plugins()  # every built-in: the run config selects an optimizer, decoder, ...
    ckpt = _checkpoint(tmp_path / "ckpt")
    emb, info = _semantic_files(tmp_path, np.eye(ITEMS, 5, dtype=np.float32))
    rewards = (f"rl.rewards=[{{name: rule}}, {{name: sasrec, weight: 0.1, options: {{checkpoint: '{ckpt}'}}}}, "
               f"{{name: semantic, options: {{embeddings: '{emb}', info_file: '{info}'}}}}]")
    cfg = loading.load_config(None, plugins.registry, overrides=["run_mode=rl", rewards])
    built = build_rewards(cfg, plugins)
    assert sorted(built) == ["rule", "sasrec", "semantic"]
    assert type(built["sasrec"]).__name__ == "SasrecReward" and built["sasrec"].item_num == ITEMS
    with pytest.raises(ConfigError, match=r"sasrec.*chekpoint.*checkpoint"):
        loading.load_config(None, plugins.registry,
                            overrides=["run_mode=rl", "rl.rewards=[{name: sasrec, options: {chekpoint: x}}]"])
