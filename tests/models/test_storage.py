import json

import numpy as np
import pytest
import torch

from seglab.errors import SeglabError
from seglab.models.storage import load_model, save_model


def test_save_load_round_trip(tmp_path, tiny_model):
    tiny_model.config.scores = {"ap": 0.5}
    folder = save_model(tiny_model, tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "weights.safetensors"]
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["family"] == "unet" and cfg["scores"] == {"ap": 0.5} and cfg["seglab_version"]
    back = load_model(folder)
    for (k, a), (_, b) in zip(tiny_model.network.state_dict().items(), back.network.state_dict().items()):
        assert torch.equal(a, b), k
    x = torch.randn(1, 1, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(tiny_model.network(x), back.network(x))


def test_never_overwrites_silently_and_leaves_no_temp(tmp_path, tiny_model):
    folder = save_model(tiny_model, tmp_path / "m")
    with pytest.raises(SeglabError, match="already exists"):
        save_model(tiny_model, folder)
    save_model(tiny_model, folder, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_broken_model_folders_give_clear_errors(tmp_path, tiny_model):
    folder = save_model(tiny_model, tmp_path / "m")
    (folder / "weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(SeglabError, match="cannot read weights"):
        load_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(SeglabError, match="not valid JSON"):
        load_model(folder)
    with pytest.raises(SeglabError, match="no config.json"):
        load_model(tmp_path)
    other = save_model(tiny_model, tmp_path / "o")
    cfg = json.loads((other / "config.json").read_text())
    cfg["architecture"]["widths"] = [8, 16, 32]
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SeglabError, match="do not fit"):
        load_model(other)
    cfg["family"] = "nonsense"
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SeglabError, match="unknown model family"):
        load_model(other)


def test_weights_are_safetensors_not_pickle(tmp_path, tiny_model):
    folder = save_model(tiny_model, tmp_path / "m")
    head = (folder / "weights.safetensors").read_bytes()[:8]
    n = int(np.frombuffer(head, dtype="<u8")[0])
    header = json.loads((folder / "weights.safetensors").read_bytes()[8 : 8 + n])
    assert header["__metadata__"]["family"] == "unet"
