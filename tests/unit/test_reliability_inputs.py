"""Input files that used to be accepted silently: duplicate YAML keys, `base:` cycles, duplicate
catalog lines, index items missing from the catalog (issue 11, item 10)."""

from __future__ import annotations

import pytest

from sidcore.config.loading import load_file_chain, read_yaml
from sidcore.data.minionerec import check_info_matches_index, read_info
from sidcore.errors import ConfigError, DataError


def test_duplicate_yaml_key_is_refused(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  max_steps: 1\neval:\n  num_beams: 5\ntrain:\n  max_steps: 2\n")
    with pytest.raises(ConfigError, match=r"c.yaml:5: invalid YAML: duplicate key 'train' \(first on line 1\)"):
        read_yaml(p)
    p.write_text("train:\n  max_steps: 1\n  max_steps: 2\n")  # nested too
    with pytest.raises(ConfigError, match="duplicate key 'max_steps'"):
        read_yaml(p)


def test_base_cycle_is_reported_as_a_cycle(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"'base:' cycle \(.*a.yaml -> .*b.yaml -> .*a.yaml\)"):
        load_file_chain(tmp_path / "a.yaml")
    (tmp_path / "s.yaml").write_text("base: s.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_file_chain(tmp_path / "s.yaml")


def test_duplicate_info_item_is_refused(tmp_path):
    p = tmp_path / "info.txt"
    p.write_text("<a_1><b_1><c_1>\tA\t0\n<a_1><b_1><c_2>\tB\t1\n<a_2><b_1><c_1>\tC\t0\n")
    with pytest.raises(DataError, match=r"info.txt:3: item id 0 is listed twice \(first on line 1\)"):
        read_info(p)


def test_index_items_missing_from_info_are_refused(tmp_path):
    p = tmp_path / "info.txt"
    p.write_text("<a_1><b_1><c_1>\tA\t0\n")
    index = {"0": ("<a_1>", "<b_1>", "<c_1>"), "1": ("<a_1>", "<b_1>", "<c_2>")}
    with pytest.raises(DataError, match=r"1 item\(s\) of index.json are missing from the catalog \(e.g. item id 1\)"):
        check_info_matches_index(p, read_info(p), index)
    check_info_matches_index(p, read_info(p), {"0": ("<a_1>", "<b_1>", "<c_1>")})  # the happy path
