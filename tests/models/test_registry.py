import pytest

from seglab.errors import SeglabError, SeglabWarning
from seglab.models.registry import ModelRegistry, list_models, user_models_dir
from seglab.models.storage import save_model


def test_builtin_unet_nuclei_is_listed():
    infos = {m.name: m for m in list_models()}
    assert "unet-nuclei" in infos
    assert infos["unet-nuclei"].family == "unet" and infos["unet-nuclei"].source == "builtin"


def test_user_models_appear_at_once_and_resolve_by_name_or_path(models_dir, tiny_model):
    assert user_models_dir() == models_dir
    reg = ModelRegistry()
    assert "tiny-unet" not in reg.names()
    folder = save_model(tiny_model, models_dir / "tiny-unet")
    assert "tiny-unet" in reg.names()
    assert reg.resolve("tiny-unet") == folder
    assert reg.resolve(str(folder)) == folder
    assert reg.load("tiny-unet").config.name == "tiny-unet"


def test_broken_user_folder_is_skipped_in_listing(models_dir):
    (models_dir / "broken").mkdir()
    (models_dir / "broken" / "config.json").write_text("{oops")
    assert "broken" not in ModelRegistry().names()


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(SeglabError, match="unknown model 'nope'"):
        ModelRegistry().resolve("nope")
    with pytest.raises(SeglabError, match="not a model folder"):
        ModelRegistry().resolve(str(tmp_path))


def test_broken_folder_warns_with_its_name_and_problem(models_dir, tiny_model):
    save_model(tiny_model, models_dir / "fine")
    (models_dir / "nojson").mkdir()
    (models_dir / "nojson" / "config.json").write_text("{oops")
    (models_dir / "noweights").mkdir()
    (models_dir / "noweights" / "config.json").write_text('{"name": "noweights", "family": "unet"}')
    reg = ModelRegistry()
    with pytest.warns(SeglabWarning) as record:
        names = reg.names()
    assert "fine" in names and "nojson" not in names and "noweights" not in names
    texts = sorted(str(r.message) for r in record)
    assert f"skipped model folder {models_dir / 'nojson'}: " in texts[0] and "not valid JSON" in texts[0]
    assert f"skipped model folder {models_dir / 'noweights'}: " in texts[1] and "no weights.safetensors" in texts[1]
    assert [p.name for p, _ in reg.problems] == ["nojson", "noweights"]
    with pytest.warns(SeglabWarning), pytest.raises(SeglabError, match="model 'nojson' cannot be used: .*not valid JSON"):
        reg.resolve("nojson")


def test_listing_imports_no_torch():
    import subprocess
    import sys

    code = "import sys\nfrom seglab.models.registry import list_models\nlist_models()\nprint('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr


def test_models_by_the_channels_they_read():
    reg = ModelRegistry()
    grey = reg.names_reading(1)
    assert grey[0] == "stardist-nuclei" and {"unet-nuclei", "maskrcnn-nuclei"} <= set(grey)
    assert reg.names_reading(3) == ["stardist-he"]
    assert reg.names_reading(2) == []
    assert next(m for m in reg.list() if m.name == "stardist-he").input_channels == 3
