"""LoRA names are confined to the configured folder."""

import os

import pytest

from wanray.inputs import InvalidInput
from wanray.serving.loras import list_loras, resolve_lora


@pytest.fixture
def lora_dir(tmp_path):
    root = tmp_path / "loras"
    root.mkdir()
    (root / "anime.safetensors").write_bytes(b"x")
    (root / "style.v2.safetensors").write_bytes(b"x")
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(b"x")
    os.symlink(secret, root / "escape.safetensors")
    (root / "notes.txt").write_text("not a lora")
    return root


def test_names_resolve_inside_the_folder(lora_dir):
    assert resolve_lora(lora_dir, "anime") == (lora_dir / "anime.safetensors").resolve()
    assert resolve_lora(lora_dir, "style.v2").name == "style.v2.safetensors"
    assert list_loras(lora_dir) == ["anime", "style.v2"]


@pytest.mark.parametrize("name", ["../secret", "..", "/etc/passwd", "a/b", "anime/../anime", ".hidden", "",
                                  "x" * 101, "anime\x00", "c:\\x", "a..b"])
def test_paths_and_odd_names_are_refused(lora_dir, name):
    with pytest.raises(InvalidInput, match="LoRA name"):
        resolve_lora(lora_dir, name)


def test_a_symlink_out_of_the_folder_is_refused(lora_dir):
    with pytest.raises(InvalidInput, match="not available") as e:
        resolve_lora(lora_dir, "escape")
    assert str(lora_dir.parent) not in str(e.value)


def test_unknown_and_unconfigured(lora_dir):
    with pytest.raises(InvalidInput, match="unknown LoRA 'ghibli'; available: anime, style.v2"):
        resolve_lora(lora_dir, "ghibli")
    with pytest.raises(InvalidInput, match="no LoRAs configured"):
        resolve_lora(None, "anime")
    assert list_loras(None) == [] and list_loras(lora_dir / "missing") == []
