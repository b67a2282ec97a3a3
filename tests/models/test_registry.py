import pytest

from seglab.errors import SeglabError
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
