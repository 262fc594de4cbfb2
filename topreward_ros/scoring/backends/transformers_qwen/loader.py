"""Loading a Qwen-VL model and its processor through transformers: the ``transformers`` backend.

``load`` is the loader the backend registry names (``backends.registry``):
it finds the model (a local directory, or a hub id in the Hugging Face
cache, downloading unless offline), checks that it is a family the scorer
supports, places it on the configured device and dtype, and wraps it in a
``VideoScorer``.
"""

from __future__ import annotations

from typing import Any

from topreward_ros.scoring.backends.transformers_qwen.runtime import (
    default_cache_dir,
    hub_offline,
    import_torch,
    is_out_of_memory,
    local_model_dir,
    out_of_memory_as_model_error,
    resolve_device,
    resolve_dtype,
)
from topreward_ros.scoring.backends.transformers_qwen.scorer import SUPPORTED_FAMILIES, VideoScorer
from topreward_ros.scoring.config import ScorerConfig
from topreward_ros.scoring.errors import ModelLoadError


def load(config: ScorerConfig) -> VideoScorer:
    """Load the VLM and its processor named by ``config`` and wrap them.

    Hub id or local directory; the standard (or given) Hugging Face cache;
    offline when ``config.local_files_only`` or ``HF_HUB_OFFLINE=1``. Any
    failure to find or load the model raises one ``ModelLoadError`` that names
    the model, where it was looked for and what to do; running out of memory
    while reading or placing the weights raises ``ModelOutOfMemoryError``.
    """
    torch = import_torch()
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    offline = hub_offline(config)
    model_ref = config.model
    local = local_model_dir(model_ref, "load model")
    is_local = local is not None
    cache_dir = config.cache_dir or default_cache_dir()
    if is_local:
        where = f"local directory {local}"
        source = str(local)
    else:
        mode = "offline (HF_HUB_OFFLINE / local_files_only): cache only" if offline else "online: cache, then hub"
        revision = f" at revision {config.revision!r}" if config.revision else ""
        where = f"hub id{revision} in cache dir {cache_dir}, {mode}"
        source = model_ref

    def fail(what: str, exc: BaseException) -> ModelLoadError:
        if is_local:
            hint = "Check that the directory holds config.json, the weights and the processor files."
        elif offline:
            hint = (
                "Download it first on a machine with access (e.g. `hf download "
                f"{model_ref}`) into that cache, set cache_dir to where it is, or unset HF_HUB_OFFLINE."
            )
        else:
            hint = "Check the id and revision, network access, and login for gated models."
        return ModelLoadError(
            f"cannot load {what} of model {model_ref!r} (looked in: {where}): {type(exc).__name__}: {exc}. {hint}"
        )

    common: dict[str, Any] = {"revision": config.revision, "local_files_only": offline}
    if not is_local:
        common["cache_dir"] = config.cache_dir
    try:
        model_config = AutoConfig.from_pretrained(source, **common)
    except Exception as exc:
        raise fail("the configuration", exc) from exc
    family = getattr(model_config, "model_type", None)
    if family not in SUPPORTED_FAMILIES:
        raise ModelLoadError(
            f"model {model_ref!r} is a {family!r} model; TOPReward scoring supports "
            f"{', '.join(SUPPORTED_FAMILIES)} (Qwen3-VL recommended)"
        )
    device = resolve_device(config)
    dtype = resolve_dtype(config, device)
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    try:
        processor = AutoProcessor.from_pretrained(source, **common)
    except Exception as exc:
        raise fail("the processor", exc) from exc
    with out_of_memory_as_model_error("loading the weights", model_ref, device):
        try:
            model = AutoModelForImageTextToText.from_pretrained(
                source, dtype=dtype, attn_implementation=config.attn_implementation, **common
            )
        except Exception as exc:
            if is_out_of_memory(exc):
                raise
            raise fail("the weights", exc) from exc
        model.to(device)
    model.eval()
    return VideoScorer(model, processor, config, model_id=model_ref, device=device, dtype=dtype, family=family)
