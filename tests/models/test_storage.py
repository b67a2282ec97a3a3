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


def _edit_config(folder, **changes):
    cfg = json.loads((folder / "config.json").read_text())
    for k, v in changes.items():
        if v is _DROP:
            cfg.pop(k)
        else:
            cfg[k] = v
    (folder / "config.json").write_text(json.dumps(cfg))


_DROP = object()


@pytest.mark.parametrize("changes,msg", [
    ({"name": 3}, "'name' must be a string, not the number 3"),
    ({"family": _DROP}, "lacks required field(s): family"),
    ({"tile_context": "lots"}, "'tile_context' must be a whole number"),
    ({"tile_context": -4}, "'tile_context' must be a whole number"),
    ({"input_channels": 0}, "'input_channels' must be a whole number of at least 1"),
    ({"architecture": [1, 2]}, "'architecture' must be a JSON object, not a list"),
    ({"thresholds": {"prob_thresh": "high"}}, "thresholds['prob_thresh'] must be a finite number"),
    ({"normalization": {"kind": "percentile", "low": -5, "high": 99}}, "normalization['low'] must be a percentile"),
    ({"normalization": {"kind": "percentile", "fill_black": "yes"}}, "normalization['fill_black'] must be true, false or 'brightfield'"),
    ({"normalization": {"kind": "percentile", "bright_outliers": 1}}, "normalization['bright_outliers'] must be true or false"),
    ({"normalization": {"kind": "percentile", "sparse_objects": "yes"}}, "normalization['sparse_objects'] must be true or false"),
    ({"object_diameter": 0}, "'object_diameter' must be a positive number or null"),
    ({"family": "cellpose"}, "unknown model family 'cellpose'"),
    ({"auto_rescale": [0.9, 1.5]}, "'auto_rescale' must be a JSON object, not a list"),
    ({"auto_rescale": {"tolerance": [0.9]}}, "auto_rescale['tolerance'] must be a list of two positive numbers"),
    ({"auto_rescale": {"aim": [1.2, "big"]}}, "auto_rescale['aim'] must be a list of two positive numbers"),
    ({"auto_rescale": {"tolerance": [1.1, 1.5]}}, "auto_rescale['tolerance'] must hold 1"),
])
def test_config_fields_are_checked_with_clear_messages(tmp_path, tiny_model, changes, msg):
    folder = save_model(tiny_model, tmp_path / "m")
    _edit_config(folder, **changes)
    with pytest.raises(SeglabError) as e:
        load_model(folder)
    assert msg in str(e.value) and str(folder / "config.json") in str(e.value)


def test_unknown_or_unbuildable_architecture(tmp_path, tiny_model):
    folder = save_model(tiny_model, tmp_path / "m")
    _edit_config(folder, architecture={"widht": [4, 8, 16], "widths": [4, 8, 16], "convs_per_block": 1})
    with pytest.raises(SeglabError, match="has key\\(s\\) that family 'unet' does not know: widht"):
        load_model(folder)
    _edit_config(folder, architecture={"widths": [4, 8, 16], "convs_per_block": "two"})
    with pytest.raises(SeglabError, match="does not make a unet network"):
        load_model(folder)


def test_unknown_maskrcnn_architecture_key(tmp_path):
    from maskrcnn_helpers import tiny_maskrcnn

    folder = save_model(tiny_maskrcnn(), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architecture"]["anchor_size"] = [4]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SeglabError, match="family .maskrcnn. does not know: anchor_size"):
        load_model(folder)


def test_weights_of_another_architecture_say_what_differs(tmp_path, tiny_model):
    folder = save_model(tiny_model, tmp_path / "m")
    _edit_config(folder, architecture={"widths": [4, 8, 24], "convs_per_block": 1})
    with pytest.raises(SeglabError) as e:
        load_model(folder)
    text = str(e.value)
    assert "do not fit the architecture" in text and "of another shape" in text and "stored" in text
    assert "Traceback" not in text and "size mismatch" not in text and "\n" not in text


def test_pickle_instead_of_safetensors_is_refused_unread(tmp_path, tiny_model, monkeypatch):
    folder = save_model(tiny_model, tmp_path / "m")
    (folder / "weights.safetensors").unlink()
    torch.save(tiny_model.network.state_dict(), folder / "weights.pt")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("a pickle was opened"))
    with pytest.raises(SeglabError, match="has weights.pt instead of weights.safetensors"):
        load_model(folder)
    (folder / "weights.pt").unlink()
    with pytest.raises(SeglabError, match="has no weights.safetensors"):
        load_model(folder)


def test_reading_a_config_imports_no_torch(tmp_path, tiny_model):
    import subprocess
    import sys

    folder = save_model(tiny_model, tmp_path / "m")
    code = ("import sys\nfrom seglab.models.storage import inspect_folder\n"
            f"print(inspect_folder({str(folder)!r}).name)\n"
            "print('torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["tiny-unet", "False"], r.stderr
