"""``avatar-studio models download ROLE``: a role's hub model into the Hugging Face cache.

``huggingface_hub.snapshot_download`` does the work: a progress bar per file on stderr, resumed
where an interrupted download stopped (files already complete are skipped), only the files the
loader reads (the role's ``files`` patterns: safetensors weights and configs, never the full
checkpoints, fp16/non-EMA variants or safety checker a repo may also hold). The registry then
finds the snapshot in the cache (``models check``), with no ``models.toml`` edit. Every failure
(no network, unknown repo, a gated repo without a token, a full disk) is one :class:`DownloadError`
line.
"""

from __future__ import annotations

import os
from pathlib import Path

from backend.models.registry import ROLES, ModelRegistry


class DownloadError(RuntimeError):
    """A download did not complete; the message is one line for the user."""


def download_role(role: str, registry: ModelRegistry, etag_timeout: float | None = None) -> Path:
    """Download ``role``'s ``hub_id@revision`` into the Hugging Face cache; returns the snapshot folder."""
    if role not in ROLES:
        raise DownloadError(f"unknown model role {role!r}; known: {', '.join(sorted(ROLES))}")
    spec = registry.specs[role]
    if role == "smplx" or not spec.hub_id:
        raise DownloadError(
            f"role {role!r} has no Hugging Face id to download: "
            + registry.resolve(role).how_to
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise DownloadError("downloading needs huggingface-hub: pip install 'avatar-studio[models]'") from exc
    patterns = list(ROLES[role].files) or None
    timeout = etag_timeout if etag_timeout is not None else float(os.environ.get("HF_HUB_ETAG_TIMEOUT", "10"))
    try:
        folder = snapshot_download(
            spec.hub_id,
            revision=spec.revision,
            cache_dir=registry.hf_cache,
            allow_patterns=patterns,
            etag_timeout=timeout,
        )
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the hub's errors are many (HTTP, offline, gated, disk): one line each
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise DownloadError(
            f"download of {spec.label} for role {role!r} failed ({type(exc).__name__}: {first}); "
            "check the network (HF_ENDPOINT, proxies), log in for gated repos (`hf auth login`), "
            "then run the same command again: it resumes"
        ) from None
    return Path(folder)
